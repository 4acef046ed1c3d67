"""``recommend``: every leaf of the paper's Fig. 1 decision diagram (PAPER.md section 6)."""

from __future__ import annotations

import itertools

import pytest

from distill_agents import METHOD_IDS, recommend

EE, EER = "expected_entropy_regularised", "expected_entropy_regularised+R"

# (eval outside, guarantees, improvement, strong, has V) -> (preferred, feasible); None = any.
LEAVES = [
    ((False, None, None, None, None), (("teacher_distill",), ())),
    ((True, False, False, None, None), ((EE,), ("on_policy_distill", "n_distill"))),
    ((True, False, True, True, None), ((EER,), ("on_policy_distill+R", "n_distill+R"))),
    ((True, False, True, False, True), (("teacher_v_reward",), ())),
    ((True, False, True, False, False), ((EER,), ("on_policy_distill+R", "n_distill+R"))),
    ((True, True, False, None, None), ((EE,), ("n_distill",))),
    ((True, True, True, True, None), ((EER,), ("n_distill+R",))),
    ((True, True, True, False, True), (("teacher_v_reward",), ())),
    ((True, True, True, False, False), ((EER,), ("n_distill+R",))),
]


def matches(pattern, answers):
    return all(p is None or p == a for p, a in zip(pattern, answers, strict=True))


@pytest.mark.parametrize("answers", list(itertools.product([False, True], repeat=5)))
def test_every_combination_lands_on_exactly_one_leaf(answers):
    leaves = [result for pattern, result in LEAVES if matches(pattern, answers)]
    assert len(leaves) == 1
    preferred, feasible = leaves[0]
    got = recommend(*answers)
    assert got.preferred == preferred
    assert set(got.feasible) == set(feasible)
    assert set(got.preferred + got.feasible) <= set(METHOD_IDS)


def test_keywords_and_preferred_set():
    got = recommend(
        eval_outside_teacher=True,
        convergence_guarantees=True,
        improvement_over_speed=True,
        teacher_strong=False,
        teacher_has_value=True,
    )
    assert got.preferred == ("teacher_v_reward",)
    preferred = {m for answers in itertools.product([False, True], repeat=5)
                 for m in recommend(*answers).preferred}  # fmt: skip
    assert preferred == {"teacher_distill", EE, EER, "teacher_v_reward"}


def test_on_policy_distill_never_offered_with_guarantees():
    for rest in itertools.product([False, True], repeat=3):
        got = recommend(True, True, *rest)
        assert not any(m.startswith("on_policy") for m in got.preferred + got.feasible)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_non_bool_answers_are_rejected(bad):
    with pytest.raises(ValueError, match="teacher_strong must be True or False"):
        recommend(True, True, True, bad, True)
