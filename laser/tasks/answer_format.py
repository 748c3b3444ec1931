"""The answer format of the reasoning tasks (GSM8K, StrategyQA, MMLU): one knob, `task.answer_format`,
chooses together what the prompt asks for, what strict extraction reads and how every example's
warm-start target ends.

- "final_answer" (the default, the paper's): the LASeR authors' zero-shot chain-of-thought prompt from
  their code, `AUTHORS_PROMPT`, which asks for `Final answer:...`; strict extraction reads the answer
  after the last "Final answer:"; targets end "Final answer: 72".
- "hash": "#### <answer>", GSM8K's own solution format (lm-evaluation-harness's gsm8k strict-match);
  each task's `prompt_templates["hash"]` asks for it; targets end "#### 72".

The three move together because a mismatch fails silently: a policy warm-started on targets ending
"#### 72" but graded on "Final answer:" scores zero on the strict metric for reasons that have nothing
to do with the reward models. Flexible extraction (each task's fallback) is the same for both formats.
"""

from __future__ import annotations

from collections.abc import Mapping

from laser.errors import LaserConfigError
from laser.tasks.loading import check_one_of, check_prompt_template

ANSWER_FORMATS = ("final_answer", "hash")
MARKERS = {"final_answer": "Final answer:", "hash": "####"}

# The authors' prompt, verbatim (the trailing space after "Solution:" included: the response follows
# it directly). `{question}` is the only placeholder; for MMLU it holds the question and its lettered
# choices ("A. ..." lines), so the choices sit between the question and "Solution: ".
AUTHORS_PROMPT = (
    "Your task is to answer the question below. Give step-by-step reasoning before you answer, and when "
    "you're ready to answer, please use the format `Final answer:...`.\n"
    "Question: {question}\n"
    "Solution: "
)

# Where a response to each format's prompt ends (`task.stop_strings` overrides it): the start of the next
# block a base model would write, "Question:" as lm-evaluation-harness's gsm8k stops (`until`), and for the
# authors' prompt also its first words, which a model repeating the whole prompt writes first (that
# repeat holds "`Final answer:...`", which strict extraction would otherwise read as the last answer line).
STOP_STRINGS = {"final_answer": ("Question:", "Your task is to answer the question below"),
                "hash": ("Question:",)}


def answer_line(answer_format: str, answer: str) -> str:
    """The line a response should end with: "Final answer: 72" or "#### 72"."""
    return f"{MARKERS[answer_format]} {answer}"


def with_answer_line(reasoning: str, answer_format: str, answer: str) -> str:
    """A warm-start target: the reasoning (if any), then the answer line in the graded format, so a
    warm-started policy learns to write what strict extraction reads."""
    line = answer_line(answer_format, answer)
    return f"{reasoning}\n{line}" if reasoning else line


def choose_prompt(defaults: Mapping[str, str], given: Mapping[str, str] | None, answer_format: str) -> str:
    """The prompt template for `answer_format`: `given` (task.prompt_templates) over the task's
    `defaults`, each checked to have `{question}` and to ask for its format's marker (a prompt that
    never mentions "####" would leave the strict metric at zero)."""
    check_one_of("answer_format", answer_format, ANSWER_FORMATS)
    templates = dict(defaults) | dict(given or {})
    unknown = sorted(set(templates) - set(ANSWER_FORMATS))
    if unknown:
        raise LaserConfigError(f"task.prompt_templates has unknown answer format(s) {unknown}; "
                               f"the formats are {list(ANSWER_FORMATS)}")
    for name, template in templates.items():
        key = f"prompt_templates.{name}"
        if not isinstance(template, str):
            raise LaserConfigError(f"task.{key}={template!r} must be a string with a '{{question}}' placeholder")
        check_prompt_template(template, key=key)
        marker = MARKERS[name].rstrip(":")
        if marker.lower() not in template.lower():
            raise LaserConfigError(f"task.{key} does not ask for {MARKERS[name]!r}, the answer line that "
                                   f"strict extraction reads with task.answer_format={name}")
    return templates[answer_format]
