"""The chart's renderer behaves as Helm does where the chart's checks depend on it.

Each expected output and each refusal here is what Helm 4.2.3's engine gave for the same template
and values, except where a test says the renderer is stricter.
"""

from __future__ import annotations

import pytest
import yaml

from tests.support.gotemplate import Chart, TemplateError, merge_values

VALUES = {"big": 1048576, "small": 900, "half": 0.5, "flag": False, "name": "x",
          "nested": {"a": {"b": 1}}, "items": ["b", "a"], "map": {"z": 1, "a": 2},
          "ports": {"http": "8000:8000"}}


@pytest.fixture
def render(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(VALUES))
    (tmp_path / "templates" / "_helpers.tpl").write_text(
        '{{- define "probe.dollar" -}}{{ $.name }}{{- end }}\n')

    def render(template: str, *overrides: dict) -> str:
        (tmp_path / "templates" / "t.yaml").write_text(template)
        return Chart(tmp_path).render(*overrides)["probe/templates/t.yaml"]

    return render


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ .Values.big }}|{{ .Values.big | quote }}", '1.048576e+06|"1.048576e+06"'),
        ("{{ .Values.small }} {{ .Values.half }} {{ .Values.flag }}", "900 0.5 false"),
        ("[{{ .Values.nope }}]", "[]"),
        ('{{ include "probe.dollar" .Values }}', "x"),
        ("{{ range $k, $v := .Values.map }}{{ $k }}={{ $v }};{{ end }}", "a=2;z=1;"),
        ("{{ range $i, $v := .Values.items }}{{ $i }}{{ $v }}{{ end }}", "0b1a"),
        ("y: {{ toYaml .Values.nested | nindent 2 }}", "y: \n  a:\n    b: 1"),
        ('{{ .Values.flag | default "fallback" }}', "fallback"),
        ('{{ printf "%s-%v" .Values.name .Values.small }}', "x-900"),
        ("{{ and .Values.name .Values.flag }}|{{ or .Values.flag .Values.name }}", "false|x"),
        ("{{ int .Values.big }}", "1048576"),
        ("{{ toYaml .Values.ports }}", "http: 8000:8000"),
        ("a\n  {{- if .Values.flag }}\nno\n  {{- else }}\nyes\n  {{- end }}\n", "a\nyes\n"),
    ],
)
def test_output_matches_helm(render, template, expected):
    assert render(template) == expected


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ eq .Values.small 900 }}", "incompatible types"),
        ("{{ .Values.nested.q.r }}", "nil pointer"),
        ('{{ fail "no" }}', "no"),
        ("{{ if .Values.flag }}", "without end"),
    ],
)
def test_what_helm_refuses_is_an_error(render, template, error):
    with pytest.raises(TemplateError, match=error):
        render(template)


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ .Values.nested }}", "toYaml"),  # Helm prints Go's map[a:map[b:1]]
        ('{{ printf "%d" .Values.small }}', "int"),  # Helm prints %!d(float64=900)
        ("{{ lookup .Values }}", "outside the subset"),
    ],
)
def test_the_renderer_refuses_more_than_helm(render, template, error):
    with pytest.raises(TemplateError, match=error):
        render(template)


def test_values_files_merge_as_helm_merges_them():
    merged = merge_values({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "d": None})
    assert merged == {"a": {"b": 1, "c": [3]}}
