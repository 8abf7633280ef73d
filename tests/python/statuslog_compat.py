# Ground truth for tests/statuslog.rs: how real Python 2 and 3 read and write
# status-file lines. Runs under both (no f-strings, no print statement).
#
#   check LINES EXPECTED  read LINES as the original reader did (split the
#                         line in 3 at spaces, eval the third part) and compare
#                         every dict with the JSON list of [key, value] lists
#                         in EXPECTED (keys as text; under Python 2 compared
#                         as their UTF-8 bytes, what a Python 2 client sent).
#   emit N SEED LINES EXPECTED
#                         write N lines the way the original daemon did
#                         ('%.2f %s %r' of a dict; Python 2 gives long values
#                         with L and str or unicode keys), and the JSON
#                         expectation the Rust parser must match.
#   replay LINES          replay LINES the original way (split, eval, check
#                         the rules, apply), to time it beside ours
#                         (examples/statuslog_bench.rs).
import io
import json
import random
import sys

PY2 = sys.version_info[0] == 2


def check(lines_path, expected_path):
    with io.open(expected_path, 'rb') as f:
        expected = json.loads(f.read().decode('utf-8'))
    if PY2:
        f = open(lines_path, 'rb')
    else:
        # Default newline handling on purpose: a raw '\r' in a line would
        # split it, so this also checks that the writer never emits one.
        f = open(lines_path, encoding='utf-8')
    bad = 0
    n = 0
    for i, line in enumerate(f):
        n += 1
        stamp, kind, rest = line.split(' ', 2)
        float(stamp)
        if kind not in ('f', 'd'):
            bad += 1
            sys.stdout.write('line %d: kind %r\n' % (i + 1, kind))
            continue
        got = eval(rest)
        if i >= len(expected):
            bad += 1
            continue
        want = {}
        for key, value in expected[i]:
            want[key.encode('utf-8') if PY2 else key] = value
        if got != want:
            bad += 1
            if bad < 5:
                sys.stdout.write('line %d: got %r want %r\n' % (i + 1, got, want))
    f.close()
    if n != len(expected):
        sys.stdout.write('read %d lines, expected %d\n' % (n, len(expected)))
        bad += 1
    sys.stdout.write('checked %d lines, %d bad\n' % (n, bad))
    return 1 if bad else 0


ALPHABET = [u'a', u'Z', u'0', u' ', u"'", u'"', u'\\', u'\n', u'\r', u'\t',
            u'\x00', u'\x1f', u'\x7f', u'\x80', u'\x85', u'\xa0', u'\xad',
            u'\xe9', u'\u20ac', u'\u2028', u'#', u'{', u'}', u':', u',',
            u'[', u'"1"', u'127.0.0.1', u' #crc32=']
if not PY2 or sys.maxunicode > 0xffff:
    ALPHABET.append(u'\U0001f600')


def random_key(rnd):
    return u''.join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 8)))


def emit(n, seed, lines_path, expected_path):
    rnd = random.Random(seed)
    expected = []
    out = io.open(lines_path, 'wb')
    stamp = 1232212345.0
    for _ in range(n):
        stamp += rnd.randint(1, 500) / 100.0
        point = {}
        want = []
        for _ in range(rnd.randint(0, 4)):
            key = random_key(rnd)
            if any(k == key for k, _ in want):
                continue
            value = rnd.choice([0, 1, rnd.randint(0, 2 ** 64 - 1)])
            if PY2:
                # The original daemon got bytes off the wire; some old
                # files hold unicode keys too.
                py_key = key if rnd.random() < 0.3 else key.encode('utf-8')
                value = long(value)  # noqa: F821 (Python 2 only)
            else:
                py_key = key
            point[py_key] = value
            want.append([key, int(value)])
        line = '%.2f %s %r\n' % (stamp, rnd.choice('fd'), point)
        out.write(line if PY2 else line.encode('utf-8'))
        expected.append({'centis': int(round(stamp * 100)), 'entries': want})
    out.close()
    with io.open(expected_path, 'wb') as f:
        f.write(json.dumps(expected).encode('utf-8'))
    return 0


def replay(lines_path):
    # The original reader's approach, for timing side by side with ours:
    # split, eval, check the rules, apply. Prints the record count and the
    # number of storages in the final point.
    point = {}
    last = None
    records = 0
    f = open(lines_path, 'rb') if PY2 else open(lines_path, encoding='utf-8')
    for line in f:
        if not line.strip():
            continue
        stamp, kind, rest = line.split(' ', 2)
        stamp = float(stamp)
        if last is not None and stamp <= last:
            raise ValueError('time not increasing at %r' % stamp)
        last = stamp
        d = eval(rest)
        if kind == 'f':
            for key, value in point.items():
                if d.get(key, -1) < value:
                    raise ValueError('full dump lowers %r' % key)
            point = d
        else:
            for key, value in d.items():
                if point.get(key, -1) > value:
                    raise ValueError('delta lowers %r' % key)
            point.update(d)
        records += 1
    f.close()
    sys.stdout.write('%d %d\n' % (records, len(point)))
    return 0


if __name__ == '__main__':
    if sys.argv[1] == 'check':
        sys.exit(check(sys.argv[2], sys.argv[3]))
    if sys.argv[1] == 'replay':
        sys.exit(replay(sys.argv[2]))
    sys.exit(emit(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]))
