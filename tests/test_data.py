"""The user's data files: JSONL, JSON, CSV and parquet through `datasets`, with a field mapping, and bad files
that must fail with a DataError naming the file, the line (or row) and the field."""

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lengthrl.errors import DataError, UnknownNameError
from lengthrl.tasks import FieldMap, load_samples

GSM8K = [
    {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
    {"question": "A pen costs 1,000 cents. Two pens?", "answer": "2 * 1000 = 2000\n#### 2,000"},
]
MATH = [
    {"problem": "Compute $1/2 + 1/4$.", "solution": "We get $\\boxed{\\frac{3}{4}}$.", "unique_id": "m1"},
    {"problem": "Solve $x+1=3$.", "solution": "So $x = \\boxed{2}$.", "unique_id": "m2"},
]


def write_jsonl(path, rows, raw_lines=()):
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_gsm8k_jsonl_with_hash_rule(tmp_path):
    f = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K)
    s = load_samples(f, FieldMap(prompt_field="question", answer_field="answer", answer_rule="hash"))
    assert [x.answer for x in s] == ["7", "2000"]
    assert [x.id for x in s] == ["gsm8k:0", "gsm8k:1"]
    assert s[0].prompt == GSM8K[0]["question"] and s[0].solution == GSM8K[0]["answer"]


def test_math_csv_with_boxed_rule_and_ids(tmp_path):
    import csv

    f = tmp_path / "math.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["problem", "solution", "unique_id"])
        w.writeheader()
        w.writerows(MATH)
    s = load_samples(f, FieldMap("problem", "solution", id_field="unique_id", answer_rule="boxed"))
    assert [(x.id, x.answer) for x in s] == [("m1", "\\frac{3}{4}"), ("m2", "2")]


def test_parquet_with_target_len_and_numeric_answers(tmp_path):
    import datasets

    rows = [{"prompt": "p1", "answer": 12, "budget": 256}, {"prompt": "p2", "answer": 7, "budget": 1024}]
    f = tmp_path / "dapo.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(f))
    s = load_samples(f, FieldMap(target_len_field="budget"))
    assert [(x.answer, x.target_len) for x in s] == [("12", 256), ("7", 1024)]


def test_json_array_file(tmp_path):
    f = tmp_path / "data.json"
    f.write_text(json.dumps([{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2"}]))
    assert [x.answer for x in load_samples(f)] == ["1", "2"]


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a", "answer": "1"}\n\n\n{"prompt": "  ", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl: line 4: field 'prompt': empty"):
        load_samples(f)


@pytest.mark.parametrize(
    "lines, fields, pattern",
    [
        (['{"prompt": "a", "answer": "1"}', '{"prompt": "b", "answer": '], FieldMap(), r"line 2: malformed JSON"),
        (['{"prompt": "a", "answer": "1"}', "[1, 2]"], FieldMap(), r"line 2: expected a JSON object"),
        (['{"prompt": "a", "answer": "1"}', '{"prompt": "b"}'], FieldMap(), r"line 2: missing field 'answer'"),
        (['{"question": "a", "answer": "1"}'], FieldMap(), r"line 1: missing field 'prompt' \(fields present: question, answer\)"),
        (['{"prompt": "", "answer": "1"}'], FieldMap(), r"line 1: field 'prompt': empty"),
        (['{"prompt": 5, "answer": "1"}'], FieldMap(), r"line 1: field 'prompt': empty or non-text"),
        (['{"prompt": "a", "answer": null}'], FieldMap(), r"line 1: field 'answer': empty"),
        (['{"prompt": "a", "answer": "no hash here"}'], FieldMap(answer_rule="hash"), r"line 1: field 'answer': no answer found with answer rule 'hash'"),
        (['{"prompt": "a", "answer": "1", "n": -3}'], FieldMap(target_len_field="n"), r"line 1: field 'n': target length must be a positive integer"),
        (['{"prompt": "a", "answer": "1", "id": "x"}', '{"prompt": "b", "answer": "2", "id": "x"}'], FieldMap(id_field="id"), r"line 2: field 'id': duplicate id 'x' \(first at .*line 1\)"),
        (['{"prompt": "a", "answer": "1", "t": "[1]"}'], FieldMap(tests_field="t"), r"line 1: field 't' must be a non-empty list"),
        (['{"prompt": "a", "answer": "1"}', '{"prompt": "b", "answer": [1, 2]}'], FieldMap(), r"d\.jsonl"),
    ],
)
def test_bad_jsonl_names_file_line_and_field(tmp_path, lines, fields, pattern):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=pattern):
        load_samples(f, fields)


def test_bad_csv_rows_name_row_and_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("prompt,answer\nq1,1\nq2,\n")
    with pytest.raises(DataError, match=r"d\.csv: row 2 \(line 3\): field 'answer': empty"):
        load_samples(f)
    f.write_text("question,answer\nq1,1\n")
    with pytest.raises(DataError, match=r"row 1 \(line 2\): missing field 'prompt'"):
        load_samples(f)


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("missing.jsonl", None, r"not found"),
        ("d.txt", "x", r"unsupported file type '\.txt'"),
        ("empty.jsonl", "\n\n", r"no rows"),
        ("empty.csv", "prompt,answer\n", r"no rows"),
        ("bin.jsonl", b"\xff\xfe{", r"not valid UTF-8"),
    ],
)
def test_bad_files(tmp_path, name, content, pattern):
    f = tmp_path / name
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    with pytest.raises(DataError, match=pattern):
        load_samples(f)


def test_unknown_answer_rule_lists_valid_rules():
    with pytest.raises(UnknownNameError, match="hash"):
        FieldMap(answer_rule="gsm")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(string.ascii_lowercase, max_size=3), c, max_size=3),
    max_leaves=6,
)
rows = st.dictionaries(st.sampled_from(["prompt", "answer", "id", "x"]), json_values, max_size=4)
line = st.one_of(rows.map(json.dumps), st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(line, max_size=5))
def test_jsonl_loader_fuzz_only_data_errors(tmp_path, lines):
    f = tmp_path / "fuzz.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        samples = load_samples(f)
    except DataError as e:
        assert "fuzz.jsonl" in str(e)
    else:
        assert samples and all(s.prompt.strip() and s.answer for s in samples)
