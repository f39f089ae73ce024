"""Language-model policies over checkpoints: BC, and the Q-SFT and ILQL extracted policies.

    BC:     pi(a|s) = pi_beta(a|s)       (also any checkpoint played as it is: filtered BC, SPO's pi_theta)
    Q-SFT:  pi(a|s) ∝ pi_beta(a|s) * exp(beta * p_theta(a|s))          (pipeline.extraction)
    ILQL:   pi(a|s) ∝ pi_beta(a|s) * exp(beta * (Q(s,a) - V(s)))       (the checkpoint's value heads)

Both act token by token in the turn format of `pipeline.tokenize`: the context is the episode so far,
each turn is prefilled once and then decoded with the models' KV caches until <|eot|> (text) or for the
action's fixed number of bin tokens, restricted to bin tokens (pixel tasks, whose contexts also carry
their observations for the <|obs|> tokens). Several environments are served in one batch (left-padded).
Tasks with admissible actions choose among the candidates instead (`rank`: pi_beta of the whole candidate
and Q read at its last token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.extraction import extracted_log_probs, ilql_log_probs
from pipeline.models import load_model, load_tokenizer, load_value_heads
from pipeline.tokenize import ActionCodec, TurnCodec, make_codec


@dataclass(frozen=True)
class PolicySpec:
    """What to load: `behaviour` alone is that checkpoint's own policy (BC, or filtered BC or SPO, named by
    `label`); with `q` (and `behaviour` the BC checkpoint) it is Q-SFT extraction, or ILQL's with
    `extraction="ilql"` (`q` then an ILQL checkpoint, whose value heads are read)."""

    behaviour: str
    q: str | None = None
    extraction: Literal["qsft", "ilql"] = "qsft"
    label: str = ""
    beta: float = 4.0
    ratio_form: bool = False
    support_eps: float = 0.0
    temperature: float = 0.0
    max_action_tokens: int = 24

    @property
    def name(self) -> str:
        if self.q is None:
            return self.label or "bc"
        if self.extraction == "ilql":
            return f"ilql(beta={self.beta:g})"
        return f"qsft(beta={self.beta:g}{', ratio' if self.ratio_form else ''})"

    @classmethod
    def from_config(cls, cfg, behaviour: str, q: str | None = None, extraction: str = "qsft", label: str = ""
                    ) -> PolicySpec:
        """A checkpoint's own policy (no `q`) or an extraction with an EvalConfig's decoding and extraction settings."""
        return cls(behaviour=behaviour, q=q, extraction=extraction, label=label, beta=cfg.beta,
                   ratio_form=cfg.ratio_form, support_eps=cfg.support_eps, temperature=cfg.temperature,
                   max_action_tokens=cfg.max_action_tokens)


class Segment(NamedTuple):
    """Token ids of part of an episode, with the live observations of its <|obs|> tokens (pixel tasks)."""

    ids: list[int]
    observations: tuple = ()


class LMPolicy:
    """`task`: the task record, which picks the turn format (text, or pixels and action bins)."""

    def __init__(self, spec: PolicySpec, task: Any = None, device: str = "cpu"):
        self.spec = spec
        self.device = torch.device(device)
        tokenizer = load_tokenizer(spec.behaviour)
        self.codec: TurnCodec | ActionCodec = make_codec(tokenizer, task) if task else TurnCodec(tokenizer)
        self.behaviour = load_model(spec.behaviour, self.device)
        self.q = load_model(spec.q, self.device) if spec.q else None
        self.heads = load_value_heads(spec.q, self.device) if spec.q and spec.extraction == "ilql" else None
        self.pad_id = tokenizer.pad_token_id
        self.action_length = self.codec.action_length or spec.max_action_tokens
        self.max_context = self.behaviour.config.max_position_embeddings - self.action_length
        self.disallowed = None  # tokens that can never be part of an action
        if self.codec.action_token_ids is not None:
            self.disallowed = torch.ones(len(tokenizer), dtype=torch.bool, device=self.device)
            self.disallowed[list(self.codec.action_token_ids)] = False

    def segment(self, observation: Any, action: Any = None) -> Segment:
        """The segment an environment step adds: the action taken (if any), then the new observation."""
        ids = ([] if action is None else self.codec.action_ids(action)) + self.codec.observation_ids(observation)
        return Segment(ids, (observation,) if isinstance(self.codec, ActionCodec) else ())

    def context(self, segments: list[Segment]) -> Segment:
        """The episode's segments as one context: the task prompt plus as many recent turns as fit."""
        head, tail = segments[0], []
        if len(head.ids) > self.max_context:
            if head.observations:
                raise ValueError(f"a first observation of {len(head.ids)} tokens exceeds the context")
            head = Segment(head.ids[: self.max_context])
        used = len(head.ids)
        for segment in reversed(segments[1:]):
            if used + len(segment.ids) > self.max_context:
                break
            tail.insert(0, segment)
            used += len(segment.ids)
        kept = [head, *tail]
        return Segment([i for s in kept for i in s.ids], tuple(o for s in kept for o in s.observations))

    # --------------------------------------------------------------------------------- distribution
    def _log_probs(self, behaviour_logits: torch.Tensor, q_scores) -> torch.Tensor:
        """`q_scores`: None (BC), p_theta's logits (Q-SFT) or ILQL's (Q, V) (see `_q_scores`)."""
        if self.disallowed is not None:
            behaviour_logits = behaviour_logits.masked_fill(self.disallowed, -torch.inf)
        if q_scores is None:
            return F.log_softmax(behaviour_logits.float(), dim=-1)
        if self.heads is not None:
            return ilql_log_probs(behaviour_logits, *q_scores, self.spec.beta)
        return extracted_log_probs(behaviour_logits, q_scores, self.spec.beta, self.spec.ratio_form,
                                   self.spec.support_eps)

    def _q_scores(self, output, rows, positions):
        """The q model's output at (rows, positions): its logits (Q-SFT), or its value heads on the final
        hidden states (ILQL)."""
        if self.heads is None:
            return output.logits[rows, positions]
        return self.heads(output.hidden_states[-1][rows, positions])

    def _q_call(self, **inputs):
        return self.q(**inputs, output_hidden_states=self.heads is not None)

    def _forward(self, ids, attention, positions, caches=(None, None), observations=None):
        outs = [None if model is None else model(input_ids=ids, attention_mask=attention, position_ids=positions,
                                                 cache=cache, use_cache=True, **(observations or {}))
                for model, cache in zip((self.behaviour, None if self.q is None else self._q_call), caches)]
        q_scores = None if outs[1] is None else self._q_scores(outs[1], slice(None), -1)
        return self._log_probs(outs[0].logits[:, -1], q_scores), tuple(None if o is None else o.cache for o in outs)

    def _observation_inputs(self, contexts: list[Segment]) -> dict[str, torch.Tensor] | None:
        """A pixel model's packed images and proprioception, in the row-major order of the <|obs|> tokens."""
        observations = [o for context in contexts for o in context.observations]
        if not observations:
            return None
        images = np.stack([np.asarray(o["image"], dtype=np.uint8) for o in observations])
        proprio = np.stack([ActionCodec.proprio(o) for o in observations])
        return {"images": torch.from_numpy(images).to(self.device),
                "proprio": torch.from_numpy(proprio).to(self.device)}

    # ------------------------------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate(self, contexts: list[Segment], generators: list[torch.Generator] | None = None) -> list[Any]:
        """One agent turn for each context (the episode so far): greedy or sampled; the env's action."""
        ids, attention = self._left_pad([c.ids for c in contexts])
        positions = (attention.cumsum(-1) - 1).clamp_min(0)
        log_probs, caches = self._forward(ids, attention, positions, observations=self._observation_inputs(contexts))
        eot = self.codec.eot_id
        out = torch.full((len(contexts), self.action_length), self.pad_id if eot is None else eot, dtype=torch.long)
        done = torch.zeros(len(contexts), dtype=torch.bool)
        for t in range(self.action_length):
            token = self._choose(log_probs, generators)
            if eot is not None:
                token[done] = eot
                done |= token.cpu() == eot
            out[:, t] = token.cpu()
            if t == self.action_length - 1 or bool(done.all()):
                break
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            log_probs, caches = self._forward(token[:, None], attention, positions, caches)
        return [self.codec.decode_action(row.tolist()) for row in out]

    def _choose(self, log_probs: torch.Tensor, generators: list[torch.Generator] | None) -> torch.Tensor:
        if self.spec.temperature <= 0:
            return log_probs.argmax(-1)
        probs = (log_probs / self.spec.temperature).softmax(-1).cpu()
        return torch.stack([torch.multinomial(p, 1, generator=None if generators is None else g)[0]
                            for p, g in zip(probs, generators or [None] * len(probs))]).to(self.device)

    # -------------------------------------------------------------------------------------- ranking
    @torch.no_grad()
    def rank(self, context: Segment, candidates: list[str]) -> list[float]:
        """log pi(a|s) of each candidate action (its text + <|eot|>) after `context`, up to a constant shared by
        the candidates (text tasks with admissible actions):

            BC:     log pi_beta(a|s) = sum_t log pi_beta(a_t | s, a_<t)
            Q-SFT:  log pi_beta(a|s) + beta * Q(s,a)
            ILQL:   log pi_beta(a|s) + beta * (Q(s,a) - V(s))

        Q(s,a) is read at the candidate's last token a_L, the token that carries the turn's reward and bootstrap:
        Q-SFT's p_theta(a_L | s, a_<L) / pi_beta(a_L | s, a_<L) (ratio form) or p_theta(a_L | s, a_<L) (paper
        form), ILQL's Q head at a_L (and V its value head at s). After a complete action pi_beta(<|eot|>) ~ 1, so
        Q-SFT's value is not divided by the candidate's own small and imprecise pi_beta(a|s), as the token-level
        ratio at its first token is; and summing token-level extracted log-probabilities instead would favour the
        shortest candidate wherever the model is unsure. Candidates with pi_beta(a|s) <= support_eps, normalised
        over the candidates, score -inf (the most likely always stays), as tokens do in `extracted_log_probs`.
        """
        prefix = context.ids
        actions = [self.codec.action_ids(c) for c in candidates]
        rows = [prefix + a for a in actions]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
        ids, attention = ids.to(self.device), attention.to(self.device)
        behaviour = self.behaviour(input_ids=ids, attention_mask=attention).logits
        q_out = None if self.q is None else self._q_call(input_ids=ids, attention_mask=attention)
        log_beta, values = [], []
        for i, action in enumerate(actions):
            positions = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(action), device=self.device)
            tokens = torch.tensor(action, device=self.device)
            logits = behaviour[i, positions].float()
            if self.disallowed is not None:
                logits = logits.masked_fill(self.disallowed, -torch.inf)
            token_log_beta = F.log_softmax(logits, dim=-1).gather(-1, tokens[:, None])[:, 0]
            log_beta.append(token_log_beta.sum())
            if q_out is not None:
                values.append(self._candidate_value(q_out, i, positions, tokens, token_log_beta[-1]))
        scores = torch.stack(log_beta)
        if q_out is None:
            return scores.tolist()
        if self.spec.support_eps > 0:
            normalised = scores - scores.logsumexp(0)
            outside = (normalised <= math.log(self.spec.support_eps)) & (normalised < normalised.max())
            scores = scores.masked_fill(outside, -torch.inf)
        return (scores + self.spec.beta * torch.stack(values)).tolist()

    def _candidate_value(self, q_out, row: int, positions: torch.Tensor, tokens: torch.Tensor,
                         last_log_beta: torch.Tensor) -> torch.Tensor:
        """Q(s,a) read at the candidate's last token (Q-SFT), or ILQL's advantage Q(s,a) - V(s)."""
        if self.heads is not None:
            q_values, value = self._q_scores(q_out, row, positions)
            return q_values[-1, tokens[-1]].float() - value[0].float()
        log_p = F.log_softmax(q_out.logits[row, positions[-1]].float(), dim=-1)[tokens[-1]]
        return (log_p - last_log_beta).exp() if self.spec.ratio_form else log_p.exp()

    def choose(self, scores: list[float], generator: torch.Generator | None = None) -> int:
        """The index of the candidate to take: the best score (temperature 0), or one sampled from
        softmax(scores / temperature)."""
        if self.spec.temperature <= 0:
            return int(np.argmax(scores))
        probs = (torch.tensor(scores, dtype=torch.float64) / self.spec.temperature).softmax(-1)
        return int(torch.multinomial(probs, 1, generator=generator)[0])

    def _left_pad(self, contexts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, contexts))
        ids = torch.full((len(contexts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(contexts), width), dtype=torch.long)
        for i, ctx in enumerate(contexts):
            ids[i, width - len(ctx):] = torch.tensor(ctx)
            attention[i, width - len(ctx):] = 1
        return ids.to(self.device), attention.to(self.device)
