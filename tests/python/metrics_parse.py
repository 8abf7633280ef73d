"""Parses a Prometheus text exposition with prometheus_client's own 0.0.4
parser and prints it as JSON: {family: {"type": ..., "samples": [[name,
labels, value], ...]}}. Used by tests/daemon_health.rs.

    metrics_parse.py FILE
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name in out:
            raise SystemExit("family %s appears twice" % fam.name)
        out[fam.name] = {
            "type": fam.type,
            "help": fam.documentation,
            "samples": [[s.name, s.labels, None if math.isnan(s.value) else s.value]
                        for s in fam.samples],
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
