"""The shared task-loading helpers (`laser.tasks.loading`), each against hand-worked values."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from laser.errors import LaserConfigError
from laser.tasks.loading import (
    check_count,
    check_fraction,
    check_limit,
    check_one_of,
    check_prompt_template,
    json_lines,
    load_hub_dataset,
    parse_rows,
    read_json_list,
    require_file,
    resolve_data_dir,
    seeded_split,
    seeded_subset,
)


def test_config_checks_accept_good_values_and_name_the_key_of_bad_ones() -> None:
    check_one_of("extraction", "strict", ("strict", "flexible"))
    check_limit("train_limit", None)
    check_limit("train_limit", 1)
    check_count("num_fewshot", 0)
    check_count("num_fewshot", 5, most=5)
    check_fraction("test_fraction", 0.2)
    assert check_prompt_template(None) is None
    assert check_prompt_template("Q: {question}") == "Q: {question}"
    bad = [
        (lambda: check_one_of("extraction", "loose", ("strict", "flexible")),
         "task.extraction='loose' is not one of ['strict', 'flexible']"),
        (lambda: check_limit("test_limit", 0),
         "task.test_limit=0 must be a positive integer or null (all rows)"),
        (lambda: check_limit("test_limit", True), "task.test_limit=True must be"),
        (lambda: check_limit("test_limit", 2.0), "task.test_limit=2.0 must be"),
        (lambda: check_count("num_fewshot", -1), "task.num_fewshot=-1 must be a non-negative integer"),
        (lambda: check_count("num_fewshot", 6, most=5), "task.num_fewshot=6 must be an integer from 0 to 5"),
        (lambda: check_count("num_fewshot", False), "task.num_fewshot=False must be"),
        (lambda: check_fraction("test_fraction", 1), "task.test_fraction=1 must be strictly between 0 and 1"),
        (lambda: check_fraction("test_fraction", True), "task.test_fraction=True must be"),
        (lambda: check_prompt_template("Q"), "task.prompt_template='Q' has no '{question}' placeholder"),
    ]
    for check, message in bad:
        with pytest.raises(LaserConfigError) as error:
            check()
        assert str(error.value).startswith(message)


def test_data_dir_and_files_are_checked_with_the_expected_layout(tmp_path: Path) -> None:
    assert resolve_data_dir(str(tmp_path), "a folder") == tmp_path
    with pytest.raises(LaserConfigError, match=r"task.data_dir='.*nowhere' does not exist; expected"):
        resolve_data_dir(str(tmp_path / "nowhere"), "a folder")
    with pytest.raises(LaserConfigError, match=r"GSM8K file '.*train.jsonl' is missing; task.data_dir"):
        require_file(tmp_path / "train.jsonl", "GSM8K", "X")


def test_json_list_files(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text('[{"a": 1}, 2]', encoding="utf-8")
    assert read_json_list(path, "StrategyQA") == [{"a": 1}, 2]
    path.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(LaserConfigError, match="StrategyQA file .* JSON list of rows, got a dict"):
        read_json_list(path, "StrategyQA")
    path.write_text("[1,", encoding="utf-8")
    with pytest.raises(LaserConfigError, match="StrategyQA file .* is not valid JSON"):
        read_json_list(path, "StrategyQA")


def test_json_lines_skip_blank_lines_and_mark_bad_ones() -> None:
    lines = ['{"a": 1}\n', "\n", "not json\n", "  \n", "[2]\n"]
    assert list(json_lines(lines)) == [(1, {"a": 1}), (3, None), (5, [2])]


def test_parse_rows_skips_counts_and_warns_once_naming_the_first_bad_row() -> None:
    rows = [(10, "a"), (11, None), (12, "b"), (13, None)]
    seen = []

    def parse(index: int, number: int, row: object) -> str | None:
        seen.append((index, number))
        return None if row is None else f"{index}:{row}"

    with pytest.warns(UserWarning) as record:
        parsed, skipped = parse_rows(rows, parse, dataset="GSM8K", source="train.jsonl", needs="a question",
                                     unit="line")
    assert (parsed, skipped) == (["0:a", "2:b"], 2)
    assert seen == [(0, 10), (1, 11), (2, 12), (3, 13)]  # indices count malformed rows too
    assert [str(w.message) for w in record] == [
        "skipped 2 malformed GSM8K row(s) in train.jsonl (first at line 11): each row needs a question"
    ]
    assert Path(record[0].filename).name == Path(__file__).name  # stacklevel=1: the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing malformed: no warning at all
        assert parse_rows([(1, "a")], parse, dataset="X", source="s", needs="n") == (["0:a"], 0)


def test_seeded_subset_is_a_reproducible_ordered_sample() -> None:
    items = list(range(100))
    assert seeded_subset(items, None, "k") is items and seeded_subset(items, 100, "k") is items
    first = seeded_subset(items, 10, "gsm8k:train:0")
    assert first == seeded_subset(items, 10, "gsm8k:train:0")
    assert first == sorted(first) and len(set(first)) == 10
    assert first != seeded_subset(items, 10, "gsm8k:test:0")
    letters = list("abcdefghij")  # the same draw on other items: positions, not values, are sampled
    assert seeded_subset(letters, 3, "k") == [letters[i] for i in seeded_subset(list(range(10)), 3, "k")]


def test_seeded_split_holds_out_a_disjoint_seeded_share() -> None:
    items = list(range(10))
    train, test = seeded_split(items, 0.2, "strategyqa:split:0")
    assert (len(train), len(test)) == (8, 2) and sorted(train + test) == items
    assert train == sorted(train) and test == sorted(test)
    assert (train, test) == seeded_split(items, 0.2, "strategyqa:split:0")
    assert [len(part) for part in seeded_split([1, 2], 0.01, "k")] == [1, 1]  # at least one test item
    assert seeded_split(["only"], 0.5, "k") == (["only"], [])  # ... unless there is only one


def test_load_hub_dataset_passes_arguments_and_turns_failures_into_one_line(monkeypatch) -> None:
    import datasets

    calls = []
    def fake_load(*args, **kwargs):
        calls.append((args, kwargs))
        return [3, 4]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert load_hub_dataset("org/data", local_hint="h") == [3, 4]
    assert load_hub_dataset("org/data", "main", split="test", local_hint="h", prepare=len) == 2
    assert calls == [(("org/data",), {}), (("org/data", "main"), {"split": "test"})]

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LaserConfigError) as error:
        load_hub_dataset("org/data", "main", local_hint="offline, pass task.data_dir=x")
    assert str(error.value) == ("could not load the hub id 'org/data' (config 'main'): no network; "
                                "offline, pass task.data_dir=x")
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: [])

    def broken_stream(rows):
        raise OSError("stream cut")

    with pytest.raises(LaserConfigError, match=r"^could not load the hub id 'org/data': stream cut; hint$"):
        load_hub_dataset("org/data", local_hint="hint", prepare=broken_stream)


def test_rows_of_a_real_jsonl_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"q": 1}) + "\n\n" + json.dumps({"q": 2}) + "\n", encoding="utf-8")
    with path.open(encoding="utf-8") as handle:
        rows = list(json_lines(handle))
    parsed, skipped = parse_rows(rows, lambda i, n, row: row["q"], dataset="X", source=str(path), needs="q")
    assert (parsed, skipped, [n for n, _ in rows]) == ([1, 2], 0, [1, 3])
