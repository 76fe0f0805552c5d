"""The apply body is UTF-8 JSON as it is: the API server's YAML decoder refuses the surrogate
escapes (`\\ud83d\\ude00`) that json.dumps writes by default for characters outside the BMP."""

from __future__ import annotations

import json

import yaml

from lepton_operator.k8s import apply_body


def test_characters_outside_the_bmp_are_sent_as_they_are() -> None:
    manifest = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"note": "ok 😀 名前"}}
    body = apply_body(manifest)
    assert "😀".encode() in body and b"\\ud83d" not in body
    assert json.loads(body) == manifest == yaml.safe_load(body.decode("utf-8"))


def test_characters_yaml_refuses_raw_stay_escaped() -> None:
    manifest = {"data": {"x": "a\x7fb\x85c\x9fd\ufffe\x01\u2028e"}}
    body = apply_body(manifest)
    assert all(ch.encode() not in body for ch in "\x7f\x85\x9f\ufffe\x01\u2028")
    assert json.loads(body) == manifest == yaml.safe_load(body.decode("utf-8"))
