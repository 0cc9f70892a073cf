"""The sidecar's text-format round trip keeps Triton's exact names and adds the pod labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from airt_metrics.exposition import ExpositionError, parse_families, relabel, render


def sample_names(page: bytes) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in page.decode().splitlines()
        if line and not line.startswith("#")
    }


def type_lines(page: bytes) -> dict[str, str]:
    return {
        line.split()[2]: line.split()[3]
        for line in page.decode().splitlines()
        if line.startswith("# TYPE ")
    }


def test_counters_keep_triton_names_without_total_or_created(triton_page: str) -> None:
    page = render(parse_families(triton_page))
    names = sample_names(page)
    assert "nv_inference_request_success" in names
    assert "nv_inference_request_duration_us" in names
    assert not any(n.endswith(("_total", "_created")) for n in names)
    types = type_lines(page)
    assert types["nv_inference_request_success"] == "counter"
    assert types["nv_inference_pending_request_count"] == "gauge"
    assert types["airt_batch_size"] == "histogram"


def test_counter_declared_with_total_keeps_its_total() -> None:
    text = '# TYPE requests_total counter\nrequests_total{code="200"} 3\n'
    page = render(parse_families(text))
    assert type_lines(page) == {"requests_total": "counter"}
    assert sample_names(page) == {"requests_total"}


def test_histogram_samples_pass_through(triton_page: str) -> None:
    page = render(parse_families(triton_page)).decode()
    assert 'airt_batch_size_bucket{model="simple",version="1",le="4.0"} 3.0' in page
    assert 'airt_batch_size_count{model="simple",version="1"} 3.0' in page


def test_relabel_adds_labels_and_they_win_over_the_workers() -> None:
    text = '# TYPE g gauge\ng{model="m",pod="worker-says"} 1\n'
    [family] = relabel(parse_families(text), {"namespace": "ns", "pod": "p-0"})
    [sample] = family.samples
    assert sample.labels == {"model": "m", "pod": "p-0", "namespace": "ns"}


def test_rendered_page_parses_back_to_the_same_values(triton_page: str) -> None:
    labelled = relabel(parse_families(triton_page), {"modeldeployment": "simple"})
    again = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(render(labelled).decode())
        for s in f.samples
    }
    key = (
        "nv_inference_request_success_total",  # the parser's own munging, on re-read only
        (("model", "simple"), ("modeldeployment", "simple"), ("version", "1")),
    )
    assert again[key] == 7


def test_label_values_and_help_are_escaped() -> None:
    text = '# HELP g line\\nbreak \\\\ slash\n# TYPE g gauge\ng{path="a\\"b\\\\c\\nd"} 1\n'
    page = render(parse_families(text)).decode()
    assert "# HELP g line\\nbreak \\\\ slash\n" in page
    assert 'g{path="a\\"b\\\\c\\nd"} 1.0' in page


def test_special_values() -> None:
    text = '# TYPE g gauge\ng{a="1"} +Inf\ng{a="2"} -Inf\ng{a="3"} NaN\n'
    page = render(parse_families(text)).decode()
    assert 'g{a="1"} +Inf' in page
    assert 'g{a="2"} -Inf' in page
    assert 'g{a="3"} NaN' in page


def test_untyped_samples_are_one_family_per_name() -> None:
    text = 'loose{a="1"} 1\nloose{a="2"} 2\n'
    page = render(parse_families(text))
    assert type_lines(page) == {"loose": "untyped"}
    assert page.decode().count("# TYPE loose") == 1


def test_garbage_is_an_exposition_error() -> None:
    with pytest.raises(ExpositionError):
        parse_families("this is { not prometheus\n")


def test_counter_written_by_generate_latest_keeps_name_and_type() -> None:
    # What prometheus_client's generate_latest makes of a custom counter family named `x`.
    text = (
        "# HELP nv_inference_request_success_total Successful requests\n"
        "# TYPE nv_inference_request_success_total counter\n"
        'nv_inference_request_success{model="m",version="1"} 3.0\n'
    )
    page = render(parse_families(text))
    assert type_lines(page) == {"nv_inference_request_success": "counter"}
    assert sample_names(page) == {"nv_inference_request_success"}
    assert b"# HELP nv_inference_request_success Successful requests\n" in page


def test_families_without_samples_are_dropped() -> None:
    text = "# HELP empty nothing here\n# TYPE empty gauge\n# TYPE g gauge\ng 1\n"
    assert type_lines(render(parse_families(text))) == {"g": "gauge"}
