"""scores: GSM8K final-number accuracy, ROUGE, BLEU and the task_score dispatch."""
import math

import pytest

from dsrepro import scores


@pytest.mark.parametrize("text,want", [
    ("So she has 3 + 4 = 7 apples. The final answer is: 7", "7"),
    ("The final answer is: $1,234.", "1234"),
    ("The final answer is 12.50 dollars, not 13", "12.50"),
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("#### -5", "-5"),
    ("she lost $-3 then gained 10, then 15.", "15"),
    ("it costs $2,000,000 total", "2000000"),
    ("no numbers here", None),
    ("", None),
])
def test_extract_final_number(text, want):
  assert scores.extract_final_number(text) == want


def test_extract_final_number_prefers_final_answer_over_hashes():
  assert scores.extract_final_number("#### 3\nThe final answer is: 4. Then 5") == "4"


def test_gsm8k_accuracy():
  preds = ["... The final answer is: 72", "so #### 10.0", "I think 5", "no idea"]
  refs = ["Natalia sold 48 clips ... #### 72", "10", "6", "3"]
  assert scores.gsm8k_accuracy(preds, refs) == 50.0
  assert scores.gsm8k_accuracy(["1,000"], ["1000"]) == 100.0
  with pytest.raises(ValueError, match="length"):
    scores.gsm8k_accuracy(["1"], ["1", "2"])


def test_rouge_identical_and_disjoint():
  a = ["the cat sat on the mat", "dogs are running in the park"]
  r = scores.rouge(a, a)
  for k in ("rouge1", "rouge2", "rougeL"):
    assert r[k] == pytest.approx(100.0)
  r = scores.rouge(["alpha beta gamma"], ["delta epsilon zeta"])
  assert all(v == 0.0 for v in r.values())
  # stemming: "running" and "runs" share a stem
  assert scores.rouge(["he runs"], ["he running"])["rouge1"] == pytest.approx(100.0)
  part = scores.rouge(["the cat sat"], ["the cat sat on the mat"])
  assert 0 < part["rouge2"] < part["rouge1"] < 100


def test_bleu():
  a = ["the quick brown fox jumps over the lazy dog", "a second sentence for the corpus here"]
  assert scores.bleu(a, a) == pytest.approx(100.0)
  assert scores.bleu(["completely unrelated words appear"], a[:1]) < 10


def test_task_score_dispatch():
  p, r = ["the cat sat on the mat"], ["the cat sat on a mat"]
  assert scores.task_score("rouge2", p, r) == pytest.approx(scores.rouge(p, r)["rouge2"])
  assert scores.task_score("bleu", p, r) == pytest.approx(scores.bleu(p, r))
  assert scores.task_score("accuracy", ["#### 3"], ["3"]) == 100.0
  assert math.isnan(scores.task_score("none", p, r))
  with pytest.raises(ValueError, match="rougeL"):
    scores.task_score("meteor", p, r)


def test_per_example_scores_average_to_the_task_score():
  preds = ["The final answer is: 7", "so 12", "x"]
  refs = ["#### 7", "#### 13", "#### 5"]
  acc = scores.per_example("accuracy", preds, refs)
  assert acc.tolist() == [100.0, 0.0, 0.0] and acc.mean() == pytest.approx(scores.task_score("accuracy", preds, refs))
  s = ["the cat sat on the mat", "a dog ran", "nothing in common"]
  r = ["the cat sat on a mat", "the dog ran away", "alpha beta"]
  r2 = scores.per_example("rouge2", s, r)
  assert r2.shape == (3,) and r2[2] == 0.0 and r2.mean() == pytest.approx(scores.task_score("rouge2", s, r))
  assert math.isnan(scores.per_example("bleu", s, r)[0]) and math.isnan(scores.per_example("none", s, r)[1])
  with pytest.raises(ValueError, match="unknown task metric 'f1'"):
    scores.per_example("f1", s, r)
