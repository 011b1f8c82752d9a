import numpy as np
import pytest

from evolution.tasks import ANSWER, ARROW, BOS, FILLER, KEYS, QUERY, SEP, TASKS, sample


def solve(task, row):
    """Answer a prompt by brute force from its tokens alone (independent of the generator)."""
    assert row[0] == BOS and row[-1] == ANSWER
    q_at = int(np.flatnonzero(row == QUERY)[-1])
    body, query = row[1:q_at], row[q_at + 1 : -1]
    body = body[~np.isin(body, FILLER)]  # filler never carries information
    stmts = [s for s in np.split(body, np.flatnonzero(body == SEP) + 1) if len(s) and s[-1] == SEP]
    if task in ("kv_retrieval", "needle"):
        return [s[2] for s in stmts if list(s[:2]) == list(query)][-1]
    if task == "variable_tracking":
        return [s[1] for s in stmts if s[0] == query[0]][-1]
    if task == "passage_retrieval":
        hits = [s[0] for s in stmts if all(w in s[1:-1] for w in query)]
        assert len(hits) >= 1
        return hits[0]
    if task == "icl_classification":
        cls = (query[0] - KEYS[0]) // 4
        return [s[1] for s in stmts if (s[0] - KEYS[0]) // 4 == cls][0]
    if task == "multi_hop":
        edge = {s[0]: s[2] for s in stmts if s[1] == ARROW}
        return edge[edge[query[0]]]
    raise AssertionError(task)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("context", [96, 1024])
def test_answers_follow_from_the_prompt(task, context):
    p = sample(task, 20, context, np.random.default_rng(context))
    assert p.tokens.shape == (20, context) and p.answer.shape == (20,)
    for row, ans in zip(p.tokens, p.answer):
        assert solve(task, row) == ans


@pytest.mark.parametrize("task", TASKS)
def test_every_query_of_a_multi_query_prompt_is_answered_by_the_body(task):
    p = sample(task, 10, 512, np.random.default_rng(3), queries=4)
    assert p.tokens.shape == (10, 512) and p.answers.shape == (10, 4)
    assert np.array_equal(p.answers[:, -1], p.answer)
    for row, answers in zip(p.tokens, p.answers):
        at = np.flatnonzero(row == ANSWER)
        assert len(at) == 4 and at[-1] == 511
        assert [solve(task, row[: i + 1]) for i in at] == list(answers)
        assert list(row[at[:-1] + 1]) == list(answers[:-1])  # earlier answers are shown in the prompt


def test_filler_fraction_and_determinism():
    a = sample("kv_retrieval", 8, 2048, np.random.default_rng(1), filler_frac=0.7)
    b = sample("kv_retrieval", 8, 2048, np.random.default_rng(1), filler_frac=0.7)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.answer, b.answer)
    assert 0.65 < np.isin(a.tokens, FILLER).mean() < 0.75


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task": "copy"}, "task"),
        ({"n": 0}, "n must"),
        ({"context": 8}, "context"),
        ({"filler_frac": 1.0}, "filler_frac"),
        ({"queries": 0}, "queries"),
        ({"queries": 40}, "too short"),
    ],
)
def test_invalid_arguments(kwargs, match):
    args = {"task": "kv_retrieval", "n": 2, "context": 128, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample(args.pop("task"), args.pop("n"), args.pop("context"), np.random.default_rng(0), **args)
