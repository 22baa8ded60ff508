from steam_dinov2.search import search_games

NAMES = {
    10: "Portal",
    20: "Portal 2",
    30: "Half-Life 2",
    40: "Euro Truck Simulator 2",
    50: "Portl Knights",
    60: "Portal Knights",
    70: "Red Dead Redemption 2",
}


def test_a_typo_finds_the_game():
    assert search_games(NAMES, "Portl 2")[0] == 20  # a letter missing
    assert search_games(NAMES, "Hlaf-Life")[0] == 30  # two letters swapped
    assert search_games(NAMES, "eruo trck simulator") == [40]


def test_an_exact_word_ranks_above_a_typo_whatever_the_length():
    assert search_games(NAMES, "portal knights") == [60, 50]
    assert search_games(NAMES, "portl knights") == [50, 60]


def test_short_words_and_strangers_do_not_match():
    assert search_games(NAMES, "rad") == []  # three letters: must appear as typed
    assert search_games(NAMES, "zelda") == []
    assert search_games(NAMES, "portal zelda") == []  # every word must match


def test_limit_and_pool_are_kept():
    assert search_games(NAMES, "2", limit=2) == [20, 30]  # shorter names first
    assert search_games(NAMES, "portal", ids=[50, 70]) == [50]
    assert search_games({}, "portal") == []
