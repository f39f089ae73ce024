"""The Twenty Questions gymnasium environment (`qsft/TwentyQuestions-v0`).

The environment hides one of the knowledge base's objects; the agent asks yes/no questions in
English and the oracle answers "Yes." or "No." truthfully (questions it cannot read get "No.").
A question that names the hidden object ("Is it a banana?") wins.

Rewards: -1 for every question that is not a correct guess, 0 for the correct guess, which
terminates the episode. After `max_questions` (20) questions without a win the game is over too
(terminated: the question budget is a rule of the game, not a time limit, so nothing is bootstrapped
after it); returns lie in [-20, 0]: a win at question k returns -(k - 1).

Observations are the new text only: the task prompt after reset, then the answer to each
question ("Yes.\\n", "No.\\n", "Correct! It is a banana.\\n"). An empty action costs a question and
is told so. `info` holds the split, the instance id {"object", "seed"} (which names the answer:
behaviour policies must not read it), the instance index, the number of questions asked and,
after a step, how the oracle read the question ("kind:animal", "guess:banana", or None).
"""

from __future__ import annotations

import string
from typing import Any, ClassVar

import gymnasium
from gymnasium.spaces import Text

from envs.base import reset_instance
from envs.twenty_questions.instances import Instance, Splits
from envs.twenty_questions.knowledge import load_knowledge_base
from envs.twenty_questions.oracle import Oracle

MAX_QUESTIONS = 20
PROMPT = ("Guess the object I am thinking of by asking yes/no questions. "
          "You win by naming it within {n} questions.\n")
YES, NO = "Yes.\n", "No.\n"
CORRECT = "Correct! It is {}.\n"
EMPTY_QUESTION = "That was empty. Ask a yes/no question.\n"


class TwentyQuestionsEnv(gymnasium.Env[str, str]):
    """Twenty Questions against a knowledge-base oracle (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, max_questions: int = MAX_QUESTIONS):
        self.kb = load_knowledge_base()
        self.oracle = Oracle(self.kb)
        self.splits = Splits(len(self.kb.things))
        self.max_questions = max_questions
        self.observation_space = Text(max_length=4096, min_length=1, charset=string.printable)
        self.action_space = Text(max_length=4096, min_length=0, charset=string.printable)
        self._instance: Instance | None = None
        self._split, self._index = "train", 0
        self._asked = 0
        self._over = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        split, index = reset_instance(options, {"train": self.splits.num_train, "eval": len(self.splits.eval)},
                                      self.np_random)
        self._instance = self.splits.train(index) if split == "train" else self.splits.eval[index]
        self._asked, self._over = 0, False
        self._split, self._index = split, index
        return PROMPT.format(n=self.max_questions), self._new_info(reading=None)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._instance is None or self._over:
            raise RuntimeError("the episode is over (or never started): call reset()")
        question = " ".join(str(action).split())
        self._asked += 1
        reading_key = None
        if not question:
            observation, solved = EMPTY_QUESTION, False
        else:
            answer = self.oracle.answer(question, self._instance.object_index)
            solved = answer.solved
            reading_key = None if answer.reading is None else answer.reading.key
            if solved:
                observation = CORRECT.format(self.kb.things[self._instance.object_index].phrase)
            else:
                observation = YES if answer.yes else NO
        self._over = solved or self._asked >= self.max_questions
        return observation, 0.0 if solved else -1.0, self._over, False, self._new_info(reading=reading_key)

    def _new_info(self, **extra: Any) -> dict[str, Any]:
        """A fresh info dict (callers may keep and modify what they are given)."""
        assert self._instance is not None
        instance = {"object": self.kb.things[self._instance.object_index].name, "seed": self._instance.seed}
        return {"split": self._split, "instance": instance, "index": self._index,
                "questions_asked": self._asked, **extra}
