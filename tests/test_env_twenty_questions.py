"""Twenty Questions: environment contract, oracle, instances, policies and calibration."""

from __future__ import annotations

import json
import random
import statistics

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import play
from envs.measure import behaviour_episodes, solver_episodes
from envs.twenty_questions import DEFAULT_BEHAVIOUR, TASK, make_behaviour, success, unit_rewards
from envs.twenty_questions.env import CORRECT, EMPTY_QUESTION, NO, YES, TwentyQuestionsEnv
from envs.twenty_questions.instances import Instance, Splits
from envs.twenty_questions.knowledge import DATA_DIR, load_knowledge_base
from envs.twenty_questions.oracle import FactTest, Guess, Oracle, SizeTest, build_phrase_tables
from envs.twenty_questions.policies import MixtureBehaviour, SplittingSolver, question_bank


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base()


@pytest.fixture(scope="module")
def oracle(kb):
    return Oracle(kb)


@pytest.fixture()
def env():
    return TwentyQuestionsEnv()


def answers(oracle, kb, question, name):
    """The oracle's reply text for the object called `name`: "Yes", "No" or "Correct"."""
    answer = oracle.answer(question, kb.index(name))
    return "Correct" if answer.solved else "Yes" if answer.yes else "No"


def reset_to(env, name, split="train"):
    """Reset to the first train instance whose hidden object is `name`."""
    names = (env.kb.things[env.splits.train(i).object_index].name for i in range(2 * env.splits.num_objects))
    index = next(i for i, hidden in enumerate(names) if hidden == name)
    return env.reset(seed=0, options={"split": split, "index": index})


# --- environment contract -------------------------------------------------------------------------

def test_registered_and_passes_env_checker():
    assert envs.get_task("twenty_questions") is TASK
    env = gymnasium.make(TASK.env_id)
    check_env(env.unwrapped)


def test_task_record():
    assert (TASK.name, TASK.env_id, TASK.max_steps, TASK.num_eval_instances) == (
        "twenty_questions", "qsft/TwentyQuestions-v0", 20, 100)
    assert not TASK.has_admissible_actions
    assert TASK.normalizer.worst == -20.0
    assert TASK.normalizer(TASK.normalizer.average) == pytest.approx(50.0)
    assert TASK.normalizer(TASK.normalizer.best) == pytest.approx(100.0)


def test_first_observation_states_the_task_and_info_names_the_instance(env):
    observation, info = reset_to(env, "banana")
    assert observation.startswith("Guess the object I am thinking of by asking yes/no questions.")
    assert observation.endswith("\n") and env.observation_space.contains(observation)
    assert info["split"] == "train" and info["instance"]["object"] == "banana"
    assert json.loads(json.dumps(info)) == info


def test_answers_rewards_and_winning_guess(env):
    reset_to(env, "banana")
    assert env.step("Is it a fruit?")[:4] == (YES, -1.0, False, False)
    assert env.step("Is it made of metal?")[:4] == (NO, -1.0, False, False)
    observation, reward, terminated, truncated, info = env.step("Is it a banana?")
    assert (observation, reward, terminated, truncated) == ("Correct! It is a banana.\n", 0.0, True, False)
    assert observation == CORRECT.format("a banana")
    assert info["questions_asked"] == 3 and info["reading"] == "guess:banana"
    with pytest.raises(RuntimeError):
        env.step("Is it a banana?")


def test_game_ends_after_twenty_questions_with_return_minus_twenty(env):
    reset_to(env, "banana")
    results = [env.step("Is it an animal?") for _ in range(20)]
    assert [r[1] for r in results] == [-1.0] * 20
    assert all(not r[2] for r in results[:-1]) and results[-1][2] and not any(r[3] for r in results)


def test_win_on_the_twentieth_question_terminates_with_return_minus_nineteen(env):
    reset_to(env, "cat")
    rewards = [env.step("Is it a dog?")[1] for _ in range(19)]
    _, reward, terminated, truncated, _ = env.step("Is it a cat?")
    assert sum(rewards) + reward == -19.0 and terminated and not truncated


@pytest.mark.parametrize("action", [
    "", "   ", "\n\t", "x" * 100_000, "¿Es un plátano? 🍌", "IS IT AN ANIMAL?!", "Is it\nan animal?",
    "'; DROP TABLE objects; --", "\x00\x01",
])
def test_step_accepts_any_string(env, action):
    reset_to(env, "dog")
    observation, reward, terminated, truncated, info = env.step(action)
    assert reward == -1.0 and not terminated and not truncated
    assert env.observation_space.contains(observation)
    json.dumps(info)


def test_empty_question_is_told_and_newlines_are_spaces(env):
    reset_to(env, "dog")
    assert env.step("  \n ")[0] == EMPTY_QUESTION
    assert env.step("IS IT AN\nANIMAL?")[0] == YES
    assert env.step("Is it a\ndog?")[:3] == ("Correct! It is a dog.\n", 0.0, True)


def test_reset_is_reproducible_and_unindexed_resets_draw_train_instances(env):
    first = [env.reset(seed=s)[1]["instance"] for s in range(50)]
    assert first == [env.reset(seed=s)[1]["instance"] for s in range(50)]
    held_out = {(env.kb.things[i.object_index].name, i.seed) for i in env.splits.eval}
    assert not {(inst["object"], inst["seed"]) for inst in first} & held_out
    assert len({inst["object"] for inst in first}) > 30


# --- instances ------------------------------------------------------------------------------------

def test_eval_split_is_fixed_distinct_and_never_a_train_instance():
    splits = Splits(158)
    assert splits.eval == Splits(158).eval and len(splits.eval) == 100
    assert len({i.object_index for i in splits.eval}) == 100
    held = {i.seed * 158 + i.object_index for i in splits.eval}  # pair (object o, seed s) sits at s * 158 + o
    # the train indices around every held-out position enumerate exactly the positions that are not held out
    for rank, position in enumerate(sorted(held)):
        around = [splits.train(i) for i in range(max(0, position - rank - 2), position - rank + 2)]
        flat = [i.seed * 158 + i.object_index for i in around]
        assert flat == [p for p in range(flat[0], flat[-1] + 1) if p not in held]
    assert splits.train(0) == Instance(0, 0)
    with pytest.raises(IndexError):
        splits.train(splits.num_train)


def test_eval_reset_plays_the_listed_pair(env):
    for index in (0, 57, 99):
        _, info = env.reset(seed=1, options={"split": "eval", "index": index})
        expected = env.splits.eval[index]
        name = env.kb.things[expected.object_index].name
        assert info["instance"] == {"object": name, "seed": expected.seed}
        assert info["split"] == "eval"
    with pytest.raises(ValueError):
        env.reset(options={"split": "eval", "index": 100})
    with pytest.raises(ValueError):
        env.reset(options={"split": "test"})


# --- knowledge base and oracle ----------------------------------------------------------------------

def test_knowledge_base_size_and_categories(kb):
    assert 140 <= len(kb.things) <= 170
    assert len({t.category for t in kb.things}) >= 17
    assert all(t.size_cm > 0 for t in kb.things)
    whale = kb.things[kb.index("whale")]
    assert {"kind:mammal", "kind:animal", "kind:living thing", "kind:sea animal"} <= whale.facts
    assert {"place:ocean", "place:water", "place:outdoors"} <= whale.facts
    assert "kind:fish" not in whale.facts
    assert {"place:kitchen", "place:house", "place:indoors"} <= kb.things[kb.index("fork")].facts


def test_loading_rejects_unknown_properties_and_ambiguous_names(tmp_path):
    vocabulary = (DATA_DIR / "vocabulary.json").read_text()
    objects = json.loads((DATA_DIR / "objects.json").read_text())
    (tmp_path / "vocabulary.json").write_text(vocabulary)
    objects["objects"][0]["materials"] = ["metl"]
    (tmp_path / "objects.json").write_text(json.dumps(objects))
    with pytest.raises(ValueError, match="metl"):
        load_knowledge_base(tmp_path)
    objects["objects"][0]["materials"] = []
    objects["objects"][0]["aliases"] = ["cat"]
    (tmp_path / "objects.json").write_text(json.dumps(objects))
    with pytest.raises(ValueError, match="names both 'dog' and 'cat'"):
        load_knowledge_base(tmp_path)


def test_phrase_tables_have_no_conflicts_and_no_name_is_a_property(kb, oracle):
    tables = build_phrase_tables(kb.vocabulary)
    assert tables["be"]["animal"] == FactTest("kind:animal")
    assert not set(kb.names) & set(tables["be"])
    bad = json.loads(json.dumps(kb.vocabulary))
    bad["tags"]["wheels"]["be"] = ["metal"]
    with pytest.raises(ValueError, match="metal"):
        build_phrase_tables(bad)


@pytest.mark.parametrize("question, name, expected", [
    # kinds, with paraphrases
    ("Is it an animal?", "dog", "Yes"),
    ("Is it a kind of animal?", "dog", "Yes"),
    ("Is it an animal?", "apple", "No"),
    ("Is it a type of fruit?", "apple", "Yes"),
    ("Is it a fruit of some kind?", "carrot", "No"),
    ("Is it in the animal kingdom?", "eagle", "Yes"),
    ("Is it a mammal?", "whale", "Yes"),
    ("Is it a fish?", "whale", "No"),
    ("Is it a fish?", "shark", "Yes"),
    ("Is it alive?", "tree", "Yes"),
    ("Is it a living thing?", "apple", "No"),
    ("Is it a piece of furniture?", "sofa", "Yes"),
    ("Is it a musical instrument?", "guitar", "Yes"),
    ("Are they vehicles?", "bus", "Yes"),
    ("Is it clothing?", "sock", "Yes"),
    ("Is it a bug?", "ant", "Yes"),
    # edible
    ("Can you eat it?", "banana", "Yes"),
    ("Is it edible?", "banana", "Yes"),
    ("Can it be eaten?", "cheese", "Yes"),
    ("Is it something you can eat?", "hammer", "No"),
    ("Is it food?", "pizza", "Yes"),
    ("Can you eat it?", "cow", "No"),
    # size
    ("Is it bigger than a microwave?", "car", "Yes"),
    ("Is it bigger than a microwave?", "apple", "No"),
    ("Is it larger than a bread box?", "sofa", "Yes"),
    ("Is it smaller than a car?", "bicycle", "Yes"),
    ("Is it bigger than an elephant?", "bus", "Yes"),
    ("Is it bigger than you?", "mouse", "No"),
    ("Is it taller than a person?", "giraffe", "Yes"),
    ("Can you hold it in your hand?", "pencil", "Yes"),
    ("Can you hold it in one hand?", "piano", "No"),
    ("Does it fit in your pocket?", "key", "Yes"),
    # material
    ("Is it made of metal?", "fork", "Yes"),
    ("Is it made of metal?", "book", "No"),
    ("Is it metal?", "key", "Yes"),
    ("Is it wooden?", "pencil", "Yes"),
    ("Is it made out of wood?", "guitar", "Yes"),
    ("Is it made of cloth?", "sock", "Yes"),
    # places
    ("Would I find it in a kitchen?", "fork", "Yes"),
    ("Would I find it in a kitchen?", "car", "No"),
    ("Is it usually found in the kitchen?", "toaster", "Yes"),
    ("Is it something you would find in a kitchen?", "pot", "Yes"),
    ("Does it live in water?", "dolphin", "Yes"),
    ("Does it live in the ocean?", "lion", "No"),
    ("Is it found outdoors?", "tree", "Yes"),
    ("Is it a household item?", "lamp", "Yes"),
    ("Would I see it on a farm?", "tractor", "Yes"),
    ("Would I find it in a house?", "car", "No"),
    # uses
    ("Is it used for cooking?", "frying pan", "Yes"),
    ("Can you cook with it?", "oven", "Yes"),
    ("Do you write with it?", "pen", "Yes"),
    ("Can you ride it?", "bicycle", "Yes"),
    ("Can you wear it?", "hat", "Yes"),
    ("Is it a means of transportation?", "train", "Yes"),
    ("Is it used to make music?", "drum", "Yes"),
    ("Is it something you sit on?", "bench", "Yes"),
    ("Is it a tool used for cutting?", "scissors", "Yes"),
    # tags
    ("Does it have wheels?", "bus", "Yes"),
    ("Has it got wheels?", "boat", "No"),
    ("Can it fly?", "eagle", "Yes"),
    ("Can it fly?", "penguin", "No"),
    ("Is it a pet?", "cat", "Yes"),
    ("Does it use electricity?", "television", "Yes"),
    ("Is it electronic?", "hammer", "No"),
    ("Does it need batteries?", "calculator", "Yes"),
    ("Is it sweet?", "lemon", "No"),
    ("Does it have legs?", "snake", "No"),
    ("Do you wear it on your feet?", "shoe", "Yes"),
    # filler around the question
    ("Okay, is it a mammal?", "dog", "Yes"),
    ("Tell me whether it can fly", "bee", "Yes"),
    ("is it usually, typically found in a bathroom?", "toothbrush", "Yes"),
    ("So... does it have fur?", "lion", "Yes"),
])
def test_oracle_answers_each_property_family_and_paraphrase(oracle, kb, question, name, expected):
    assert answers(oracle, kb, question, name) == expected


@pytest.mark.parametrize("question", [
    "Is it a banana?", "is it bananas", "Is it an Banana?", "IS IT A BANANA", "Is the object the Banana",
    "Could it be a banana?", "Are you thinking of a banana?", "My guess is a banana.", "Banana?",
    "I think it is bananas", "Is it a kind of banana?", "Is it a banana by any chance?",
    "Is the answer a banana?", "is it   a  banana ??",
])
def test_guesses_with_articles_plurals_and_case_win(oracle, kb, question):
    assert oracle.read(question) == Guess(kb.index("banana"), "banana")
    assert answers(oracle, kb, question, "banana") == "Correct"
    assert answers(oracle, kb, question, "apple") == "No"


@pytest.mark.parametrize("question, name", [
    ("Is it an Apple?", "apple"), ("Are they mice?", "mouse"), ("Is it a pair of scissors?", "scissors"),
    ("Is it headphones?", "headphones"), ("Is it a T-Shirt?", "shirt"), ("Is it the fridge?", "refrigerator"),
    ("Is it ice cream?", "ice cream"), ("is it KNIVES", "knife"), ("Is it a cactus?", "cactus"),
    ("Cacti?", "cactus"),
])
def test_guesses_of_irregular_names_and_aliases(oracle, kb, question, name):
    assert answers(oracle, kb, question, name) == "Correct"


def test_every_object_is_won_by_the_policies_guess_and_nothing_else_is_a_guess(oracle, kb):
    bank = question_bank()
    for index, guess in enumerate(bank.guesses):
        assert oracle.read(guess) == Guess(index, kb.things[index].name)
    assert not any(isinstance(oracle.read(q), Guess) for q in bank.questions)


@pytest.mark.parametrize("question", [
    "Is it a banana or an apple?", "Is it bigger than a banana?", "What is it?", "Is it not a banana?",
    "banana apple cherry", "Is it a banana, apple, orange?", "", "??", "Is it yellow?", "Tell me the answer",
    "Is it a bananaaa?", "x" * 10_000,
])
def test_questions_that_are_not_guesses_never_win_and_unread_questions_get_no(oracle, kb, question):
    assert answers(oracle, kb, question, "banana") != "Correct"
    reading = oracle.read(question)
    if reading is None:
        assert answers(oracle, kb, question, "banana") == "No"


@pytest.mark.parametrize("question", [
    "Is it not an animal?", "Is it an animal or a plant?", "Is it a qwerty?", "How big is it?", "Is it big?",
    "Why?", "Is it a fruit or a vegetable?",
])
def test_unparseable_questions_are_answered_no_even_when_the_truth_would_be_yes(oracle, kb, question):
    assert oracle.read(question) is None
    assert answers(oracle, kb, question, "apple") == "No"
    assert answers(oracle, kb, question, "dog") == "No"


def test_random_word_salad_never_raises(oracle, kb):
    rng = random.Random(0)
    words = [*kb.names, "is", "it", "a", "the", "not", "or", "can", "you", "does", "bigger", "than", "made", "of",
             "?", "!", ",", "'s", "n't", "é", "\n", "used", "for", "in", "kitchen", "found", "something", "kind"]
    for _ in range(2000):
        question = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        answer = oracle.answer(question, rng.randrange(len(kb.things)))
        assert answer.solved <= answer.yes


def test_canonical_questions_read_as_the_intended_family(oracle):
    readings = dict(oracle.canonical_questions())
    assert len(readings) >= 100
    assert readings["Is it an animal?"] == FactTest("kind:animal")
    assert readings["Can you eat it?"] == FactTest("kind:food")
    assert readings["Is it made of metal?"] == FactTest("material:metal")
    assert readings["Would I find it in a kitchen?"] == FactTest("place:kitchen")
    assert readings["Is it used for cooking?"] == FactTest("use:cooking")
    assert readings["Does it have wheels?"] == FactTest("tag:wheels")
    assert readings["Is it bigger than a microwave?"] == SizeTest(bigger=True, limit_cm=50.0)
    assert readings["Can you hold it in one hand?"] == SizeTest(bigger=False, limit_cm=36.0)


def test_answers_are_consistent_across_paraphrases(oracle, kb):
    groups = [
        ["Is it an animal?", "Is it a kind of animal?", "Is it a type of animal?",
         "Is it some sort of animal?"],
        ["Can you eat it?", "Is it edible?", "Is it food?", "Can it be eaten?",
         "Is it something you can eat?"],
        ["Would I find it in a kitchen?", "Is it found in the kitchen?", "Would you find it in a kitchen?",
         "Is it usually kept in a kitchen?", "Is it something you would find in the kitchen?"],
        ["Is it made of metal?", "Is it metal?", "Is it metallic?", "Is it made from metal?"],
        ["Is it bigger than a microwave?", "Is it larger than a microwave?",
         "Is it bigger than a microwave oven?"],
    ]
    for group in groups:
        tests = {oracle.read(q) for q in group}
        assert len(tests) == 1 and None not in tests, group
        for thing in kb.things[::7]:
            assert len({answers(oracle, kb, q, thing.name) for q in group}) == 1


# --- policies -------------------------------------------------------------------------------------

class WithoutInfo:
    """`policy` shown an empty info dict."""

    def __init__(self, policy):
        self.policy = policy

    def reset(self, seed):
        self.policy.reset(seed)

    def act(self, observation, info):
        return self.policy.act(observation, {})


def transcript(env, policy, seed):
    return play(env, policy, seed).actions


def test_behaviour_is_reproducible_and_ignores_info(env):
    policy = make_behaviour(**DEFAULT_BEHAVIOUR)
    runs = [transcript(env, policy, seed) for seed in range(8)]
    assert runs == [transcript(env, make_behaviour(**DEFAULT_BEHAVIOUR), seed) for seed in range(8)]
    assert runs == [transcript(env, WithoutInfo(policy), seed) for seed in range(8)]
    assert len({tuple(run) for run in runs}) == 8


def test_solver_wins_every_eval_instance_quickly_and_best_is_its_average():
    returns = [p.raw_return for p in solver_episodes(TASK)]
    assert min(returns) >= -10 and statistics.fmean(returns) == pytest.approx(TASK.normalizer.best)


def test_redundant_moves_never_change_the_candidates(env):
    policy = MixtureBehaviour(0.0, 0.0, redundant_weight=1.0, random_weight=0.0, premature_weight=0.0)
    observation, _ = env.reset(seed=3)
    policy.reset(3)
    counts = []  # candidates left when choosing each move (after reading the previous answer)
    for _ in range(6):
        observation = env.step(policy.act(observation, {}))[0]
        counts.append(policy.candidates.bit_count())
    # nothing is settled before the first answer, so the first question is informative; the rest are not
    assert counts[0] == len(env.kb.things) > counts[1] and len(set(counts[1:])) == 1


def test_premature_moves_are_guesses_and_full_skill_is_the_solver(env):
    premature = MixtureBehaviour(0.0, 0.0, redundant_weight=0.0, random_weight=0.0, premature_weight=1.0)
    guesses = set(question_bank().guesses)
    assert all(action in guesses for action in transcript(env, premature, seed=4))
    full_skill = MixtureBehaviour(1.0, 1.0, 1.0, 1.0, 1.0)
    assert transcript(env, full_skill, seed=5) == transcript(env, SplittingSolver(), seed=5)


def test_behaviour_validates_skill_range():
    with pytest.raises(ValueError):
        MixtureBehaviour(0.6, 0.4, 1.0, 1.0, 1.0)


# --- rewards and calibration ------------------------------------------------------------------------

def test_unit_rewards_and_success():
    assert unit_rewards([-1.0, -1.0, 0.0], True) == [0.0, 0.0, 0.9]
    assert unit_rewards([0.0], True) == [1.0]
    assert unit_rewards([-1.0] * 19 + [0.0], True)[-1] == pytest.approx(0.05)
    assert unit_rewards([-1.0] * 20, False) == [0.0] * 20
    assert success([-1.0, 0.0], True) and not success([-1.0] * 20, False) and not success([], False)


def test_dataset_average_matches_the_normalizer_on_a_smaller_sample():
    """The default behaviour's average return on 600 episodes is within 1.0 of the constant (20,000 episodes).

    The standard deviation of a return is about 4.1, so the sample mean's standard error is about 0.17:
    the tolerance is about 6 standard errors (and the sample is seeded, so the test is deterministic).
    """
    assert abs(TASK.normalizer.average - -17.3) <= 1.5
    returns = [p.raw_return for p in behaviour_episodes(TASK, 600, first_seed=1_000_000)]
    assert statistics.fmean(returns) == pytest.approx(TASK.normalizer.average, abs=1.0)
    assert all(-20.0 <= r <= 0.0 for r in returns)
    assert 0.2 < sum(r > -20 for r in returns) / len(returns) < 0.6


@pytest.mark.slow
def test_dataset_average_on_the_full_sample():
    returns = [p.raw_return for p in behaviour_episodes(TASK, 20_000)]
    assert statistics.fmean(returns) == pytest.approx(TASK.normalizer.average, abs=0.001)


def test_play_helper_matches_env_rules(env):
    rewards = play(env, SplittingSolver(), seed=0, options={"split": "eval", "index": 0}).rewards
    assert rewards[-1] == 0.0 and set(rewards[:-1]) <= {-1.0} and len(rewards) <= 20
