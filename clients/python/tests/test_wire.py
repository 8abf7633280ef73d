"""The bytes the client sends and the ids it computes, without any process."""

import json
import os

import pytest

import tidharness
import tidstorage_client
from tidstorage_client import wire, zope


def test_begin_commit_abort_frames():
    b = wire.encode_begin("h:1_7f", ['[[["10.0.0.5", 8100]], "1"]', "/srv/Data.fs"])
    c = wire.encode_commit("h:1_7f", [("a", 1), ("b", 2 ** 64 - 1)])
    a = wire.encode_abort("h:1_7f")
    assert b == b'BEGIN\nh:1_7f\n2\n[[["10.0.0.5", 8100]], "1"]\n/srv/Data.fs\n'
    assert c == b"COMMIT\nh:1_7f\n2\na\nb\n1\n18446744073709551615\n"
    assert a == b"ABORT\nh:1_7f\n"
    assert tidharness.parse_commands(b + c + a) == [
        ("BEGIN", "h:1_7f", ['[[["10.0.0.5", 8100]], "1"]', "/srv/Data.fs"]),
        ("COMMIT", "h:1_7f", {"a": 1, "b": 2 ** 64 - 1}),
        ("ABORT", "h:1_7f", None),
    ]


def test_ids_with_line_breaks_are_refused_before_sending():
    with pytest.raises(wire.FramingError):
        wire.encode_begin("x", ["a\nb"])


def test_zeo_storage_id_matches_the_original_product():
    # Products.TIDStorage: json.dumps((tuple(tuple(x) for x in storage._addr), storage._storage))
    # with _addr as ZODB.config gives it: a list of (host, port) pairs.
    assert tidstorage_client.zeo_storage_id([("10.0.0.5", 8100)], "1") == \
        '[[["10.0.0.5", 8100]], "1"]'
    two = tidstorage_client.zeo_storage_id([("a", 1), ("b", 2)], "main")
    assert json.loads(two) == [[["a", 1], ["b", 2]], "main"]
    # A bare pair or port, which the original could not handle, as ZEO reads it.
    assert tidstorage_client.zeo_storage_id(("10.0.0.5", 8100), "1") == \
        '[[["10.0.0.5", 8100]], "1"]'
    assert tidstorage_client.zeo_storage_id(8100, "1") == '[[["127.0.0.1", 8100]], "1"]'
    assert tidstorage_client.zeo_storage_id("/run/zeo.sock", "1") == '[["/run/zeo.sock"], "1"]'


def test_filestorage_id_is_its_absolute_path(tmp_path, monkeypatch):
    from ZODB.FileStorage import FileStorage

    monkeypatch.chdir(tmp_path)
    fs = FileStorage("rel.fs")
    try:
        assert tidstorage_client.default_storage_id(fs) == os.path.join(str(tmp_path), "rel.fs")
    finally:
        fs.close()


def test_other_storages_are_not_tracked():
    from ZODB.MappingStorage import MappingStorage

    assert tidstorage_client.default_storage_id(MappingStorage()) is None


def test_parse_address():
    assert wire.parse_address("10.0.0.9:9001") == ("10.0.0.9", 9001)
    assert wire.parse_address("[::1]:9002") == ("::1", 9002)
    assert wire.parse_address("host") == ("host", 9001)
    assert wire.parse_address(("h", "9003")) == ("h", 9003)
    for bad in (":9001", "h:x", "h:0", "h:70000"):
        with pytest.raises(ValueError):
            wire.parse_address(bad)


def test_product_config():
    s = zope.settings_from_product_config({"backend-ip": "10.0.0.9", "backend-port": "9001"})
    assert s == {"address": ("10.0.0.9", 9001)}
    s = zope.settings_from_product_config(
        {"backend-ip": "h", "backend-port": "1", "client-id": "10.0.0.7:8080"})
    assert s["client_id"] == "10.0.0.7:8080"
    with pytest.raises(zope.ConfigError, match="missing section"):
        zope.settings_from_product_config(None)
    with pytest.raises(zope.ConfigError, match="backend-ip and backend-port"):
        zope.settings_from_product_config({"backend-ip": "h"})
    with pytest.raises(zope.ConfigError, match="must be an integer"):
        zope.settings_from_product_config({"backend-ip": "h", "backend-port": "x"})


def test_zope_initialize_reads_zope_conf(monkeypatch):
    """initialize() against a stand-in for Zope's App.config (Zope itself is
    not a test dependency): it installs the client from the section."""
    import sys
    import types

    rec = tidharness.Recorder()
    conf = types.SimpleNamespace(product_config={
        "tidstorage": {"backend-ip": "127.0.0.1", "backend-port": str(rec.port)}})
    app = types.ModuleType("App")
    app_config = types.ModuleType("App.config")
    app_config.getConfiguration = lambda: conf
    app.config = app_config
    monkeypatch.setitem(sys.modules, "App", app)
    monkeypatch.setitem(sys.modules, "App.config", app_config)
    client = zope.initialize(None)
    assert client is tidstorage_client.installed()
    assert client.sender.address == ("127.0.0.1", rec.port)
    conf.product_config = {}
    assert zope.initialize(None) is None
    rec.close()
