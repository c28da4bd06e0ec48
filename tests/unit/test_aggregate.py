import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.council.aggregate import aggregate_rankings, disagreement


def ballot(reviewer, ranking, valid=True):
    return {"reviewer": reviewer, "ranking": ranking, "valid": valid}


def by_member(standings):
    return {s["member"]: s for s in standings}


COUNCIL = [
    ballot("a", ["b", "c", "d"]),
    ballot("b", ["c", "a", "d"]),
    ballot("c", ["b", "a", "d"]),
    ballot("d", ["b", "c", "a"]),
]


def test_hand_worked_council():
    standings = aggregate_rankings(["a", "b", "c", "d"], COUNCIL)
    assert [s["member"] for s in standings] == ["b", "c", "a", "d"]
    rows = by_member(standings)
    assert rows["b"] == {"member": "b", "mean_rank": 1.0, "ballots": 3, "disagreement": 0.0}
    assert rows["c"]["mean_rank"] == pytest.approx(5 / 3)
    assert rows["a"]["mean_rank"] == pytest.approx(7 / 3)
    assert rows["d"] == {"member": "d", "mean_rank": 3.0, "ballots": 3, "disagreement": 0.0}
    # positions 0.5, 0.5, 1.0: std sqrt(1/18) over the widest sqrt(2)/3 for three values
    assert rows["a"]["disagreement"] == pytest.approx(0.5)
    assert rows["c"]["disagreement"] == pytest.approx(0.5)


def test_invalid_ballots_are_ignored():
    noise = [
        ballot("e", None, valid=False),
        ballot("f", ["d", "c", "a"], valid=False),
        {"reviewer": "g", "ranking": None, "valid": True},
    ]
    members = ["a", "b", "c", "d"]
    assert aggregate_rankings(members, COUNCIL + noise) == aggregate_rankings(members, COUNCIL)


def test_an_even_split_between_best_and_worst_is_full_disagreement():
    standings = aggregate_rankings(
        ["x", "y", "z"], [ballot("r", ["x", "y", "z"]), ballot("s", ["y", "z", "x"])]
    )
    assert by_member(standings)["x"]["disagreement"] == 1.0
    assert by_member(standings)["x"]["mean_rank"] == 2.0


@pytest.mark.parametrize(
    ("ranks", "expected"),
    [
        ([], 0.0),
        ([(2, 3)], 0.0),
        ([(2, 3), (2, 3), (2, 3)], 0.0),
        ([(1, 4), (4, 4)], 1.0),
        ([(1, 3), (1, 3), (3, 3)], 1.0),
        ([(1, 5), (1, 5), (5, 5), (5, 5)], 1.0),
        ([(1, 2), (3, 3)], 1.0),
        ([(1, 3), (2, 3)], 0.5),
        ([(1, 1), (1, 1)], 0.0),
        ([(1, 1), (1, 3), (3, 3)], 1.0),
    ],
)
def test_disagreement_on_hand_worked_ranks(ranks, expected):
    assert disagreement(ranks) == pytest.approx(expected)


@given(
    st.lists(
        st.integers(1, 12).flatmap(lambda size: st.tuples(st.integers(1, size), st.just(size))),
        max_size=40,
    )
)
def test_disagreement_stays_between_zero_and_one(ranks):
    assert 0.0 <= disagreement(ranks) <= 1.0


@given(
    st.integers(2, 12).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
    st.integers(2, 20),
)
def test_unanimous_ranks_never_disagree(rank, count):
    assert disagreement([rank] * count) == 0.0


def test_ties_go_to_more_ballots_then_member_id():
    ballots = [
        ballot("1", ["q", "p"]),
        ballot("2", ["p", "q"]),
        ballot("3", ["q", "r"]),
        ballot("4", ["r", "q"]),
    ]
    standings = aggregate_rankings(["r", "p", "q"], ballots)
    assert [(s["member"], s["mean_rank"], s["ballots"]) for s in standings] == [
        ("q", 1.5, 4),
        ("p", 1.5, 2),
        ("r", 1.5, 2),
    ]


def test_unranked_members_come_last_without_numbers():
    standings = aggregate_rankings(["z", "b", "a"], [ballot("z", ["b"], valid=True)])
    assert standings == [
        {"member": "b", "mean_rank": 1.0, "ballots": 1, "disagreement": 0.0},
        {"member": "a", "mean_rank": None, "ballots": 0, "disagreement": None},
        {"member": "z", "mean_rank": None, "ballots": 0, "disagreement": None},
    ]


def test_no_ballots_leave_everyone_unranked():
    standings = aggregate_rankings(["b", "a"], [])
    assert [(s["member"], s["ballots"]) for s in standings] == [("a", 0), ("b", 0)]


def test_strangers_on_a_ballot_keep_their_place_but_get_no_standing():
    standings = aggregate_rankings(["a", "b"], [ballot("c", ["gone", "a", "b"])])
    assert [(s["member"], s["mean_rank"]) for s in standings] == [("a", 2.0), ("b", 3.0)]
