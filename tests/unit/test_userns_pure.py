"""--userns remap's pure parts: the config keys, the subordinate-range lookup and stacking,
and the id shift chowned copies use."""

from __future__ import annotations

import pytest

from minidock.engine.spec import remap
from minidock.errors import InvalidArgument
from minidock.settings import parse_engine_config
from minidock.storage.shifted import shift_of


def test_the_userns_settings():
    cfg = parse_engine_config(b'{"userns-remap": " default ", "userns-remap-layers": "copy"}')
    assert (cfg.userns_remap, cfg.userns_remap_layers) == ("default", "copy")
    assert parse_engine_config(b"{}").userns_remap_layers == ""
    with pytest.raises(InvalidArgument, match='userns-remap-layers must be "idmapped" or '
                                              "\"copy\", not 'chown'"):
        parse_engine_config(b'{"userns-remap-layers": "chown"}')
    with pytest.raises(InvalidArgument, match="userns-remap must be a string"):
        parse_engine_config(b'{"userns-remap": 1}')


def test_ranges_by_name_or_number_stacked_from_zero(tmp_path):
    subuid = tmp_path / "subuid"
    subuid.write_text("other:100000:65536\nbob:200000:1000\n1001:300000:5\nbob:x:1\n")
    ranges = remap._ranges(str(subuid), "bob", 1001)
    assert ranges == [(200000, 1000), (300000, 5)]
    assert remap._stack(ranges) == [(0, 200000, 1000), (1000, 300000, 5)]
    assert remap._ranges(str(tmp_path / "missing"), "bob", 1001) == []


def test_modes_and_refusals():
    assert remap.wanted("remap", "") and not remap.wanted("host", "default")
    assert remap.wanted("", "default") and not remap.wanted("", "")
    assert remap.for_container({"UsernsMode": "host"}) is None
    with pytest.raises(InvalidArgument, match="--userns: invalid USER mode"):
        remap.check_mode("private", False, "", "")
    with pytest.raises(InvalidArgument, match="privileged mode is incompatible"):
        remap.check_mode("remap", True, "", "")


def test_the_shift_into_the_range_and_back():
    idmap = ([(0, 100000, 65536)], [(0, 200000, 1000), (1000, 300000, 10)])
    into, back = shift_of(idmap), shift_of(idmap, back=True)
    assert into(0, 0) == (100000, 200000)
    assert into(7, 1005) == (100007, 300005)
    assert into(70000, 2000) == (65534, 65534)  # outside the mapping: the overflow id
    assert back(100007, 300005) == (7, 1005)
    assert back(0, 0) == (0, 0)  # the host's root (a file the engine wrote) stays
