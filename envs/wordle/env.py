"""Wordle as a text gymnasium environment.

Rules: a hidden 5-letter word, at most `MAX_GUESSES` guesses. Each guess gets per-letter feedback
(see `feedback.py`). Reward: 0 for the correct guess (which terminates the episode), -1 for every other
guess, including one that is not an allowed word (it uses a turn and is answered "not a valid word").
The game ends (terminates) with the correct guess or after `MAX_GUESSES` guesses: running out of
guesses is the game's real end, not a time limit, so nothing is bootstrapped after it. Raw returns lie in [-6, 0].

Observations: the first states the task; each later one is one line, the normalized guess followed by
its feedback ("crane: _ Y _ _ G") or by ": not a valid word". `info` holds the structured feedback:
"guess", "feedback" (e.g. "_Y__G", None for an invalid guess), "valid" and "turn" (guesses made so far),
besides "split" and "instance" (the hidden word's index in its split).
"""

from __future__ import annotations

import string
from typing import Any, ClassVar

import gymnasium
from gymnasium import spaces

from envs.base import reset_instance
from envs.wordle import words
from envs.wordle.feedback import feedback

MAX_GUESSES = 6
PROMPT = ("Guess the hidden 5-letter word in 6 tries. After each guess: G = right letter right place, "
          "Y = in the word elsewhere, _ = not in the word.\n")
INVALID = "not a valid word"
MAX_ECHO = 24  # characters of an invalid guess echoed back (an action may be arbitrarily long)
_ECHOABLE = frozenset(string.printable) - frozenset(string.whitespace) | {" "}


def normalize(action: str) -> str:
    """Lower case with surrounding whitespace stripped and inner whitespace runs (newlines too) as one space."""
    return " ".join(action.split()).lower()


def echo(guess: str) -> str:
    """A normalized guess made safe and short for an observation: printable ASCII, at most `MAX_ECHO` chars."""
    shown = "".join(c if c in _ECHOABLE else "?" for c in guess[:MAX_ECHO])
    return (shown + "..." if len(guess) > MAX_ECHO else shown) or "(empty)"


class WordleEnv(gymnasium.Env):
    """Text Wordle; `reset(options={"split": "train" | "eval", "index": i})` hides word i of the split."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Text(max_length=1024, charset=string.printable)
        self.action_space = spaces.Text(max_length=64, charset=string.printable)
        self._instance: dict[str, Any] = {}
        self._answer = ""
        self._turn = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        split, index = reset_instance(options, {s: len(words.split_answers(s)) for s in ("train", "eval")},
                                      self.np_random)
        self._instance = {"split": split, "instance": index}
        self._answer = words.split_answers(split)[index]
        self._turn = 0
        return PROMPT, {**self._instance, "turn": 0}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        guess = normalize(action)
        self._turn += 1
        valid = guess in words.allowed_set()
        pattern = feedback(guess, self._answer) if valid else None
        if valid:
            observation = f"{guess}: {' '.join(pattern)}\n"
        else:
            guess = echo(guess)
            observation = f"{guess}: {INVALID}\n"
        solved = guess == self._answer
        info = {**self._instance, "guess": guess, "feedback": pattern, "valid": valid, "turn": self._turn}
        return observation, 0.0 if solved else -1.0, solved or self._turn >= MAX_GUESSES, False, info
