"""Q-SFT policy extraction at inference time (no extra training).

    pi(a|s) ∝ pi_beta(a|s) * exp(beta * p_theta(a|s))                   (the paper's form, default)
    pi(a|s) ∝ pi_beta(a|s) * exp(beta * p_theta(a|s) / pi_beta(a|s))    (ratio form, an option)

both over pi_beta's support {a : pi_beta(a|s) > eps}, the set the Bellman target maximises over
(pipeline.algorithm.bellman_targets). p_theta's token probabilities are the learned conservative Q-values:
at Q-SFT's fixed point p_theta(a|s) ≈ pi_beta(a|s) Q(s,a) plus the label-smoothing mass
(1 - y)/(V - 1) of the other actions, so p_theta / pi_beta ≈ Q(s,a) on the support, where that mass is
negligible next to pi_beta (for a large vocabulary; with a few action tokens it is not, and Q-SFT's Bellman
targets can take it out: `pipeline.algorithm.smoothing_corrected`); off the support it would dominate the ratio,
hence the restriction.
beta trades improvement against staying close to pi_beta, the BC model (beta = 0 is BC).

ILQL's extraction (Snell et al. 2022) reads its Q and V heads instead:

    pi(a|s) ∝ pi_beta(a|s) * exp(beta * (Q(s,a) - V(s)))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.algorithm import action_support


def extracted_log_probs(pi_beta_logits: torch.Tensor, q_logits: torch.Tensor, beta: float,
                        ratio_form: bool = False, support_eps: float = 0.0) -> torch.Tensor:
    """Normalised log pi(.|s) over the last dimension from pi_beta's and p_theta's logits.

    Tokens with pi_beta <= support_eps get probability 0 (pi_beta's most likely token always stays in).
    """
    log_beta = F.log_softmax(pi_beta_logits.float(), dim=-1)
    p_theta = F.softmax(q_logits.float(), dim=-1)
    bonus = p_theta / log_beta.exp().clamp_min(1e-12) if ratio_form else p_theta
    scores = log_beta + beta * bonus
    if support_eps > 0:
        scores = scores.masked_fill(~action_support(log_beta, support_eps), -torch.inf)
    return F.log_softmax(scores, dim=-1)


def on_support(log_probs: torch.Tensor, support_eps: float) -> torch.Tensor:
    """log pi_beta(.|s) renormalised over its support {a : pi_beta(a|s) > support_eps} (the most likely always
    stays): BC sampled where Q-SFT's extraction samples, so that the extraction at beta = 0 is this policy."""
    return F.log_softmax(log_probs.masked_fill(~action_support(log_probs, support_eps), -torch.inf), dim=-1)


def ilql_log_probs(pi_beta_logits: torch.Tensor, q_values: torch.Tensor, value: torch.Tensor, beta: float
                   ) -> torch.Tensor:
    """Normalised log pi(.|s) over the last dimension from pi_beta's logits and ILQL's Q(s, .) and V(s)
    (value: the leading shape of q_values). V does not change the normalised distribution; it is kept so the
    scores are the advantages the formula names."""
    scores = F.log_softmax(pi_beta_logits.float(), dim=-1) + beta * (q_values.float() - value.float()[..., None])
    return F.log_softmax(scores, dim=-1)
