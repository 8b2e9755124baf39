"""Numbers in the lessons' prose come from the code: no markdown cell may contradict a recipe or a
paper figure that ``labkd`` holds.

A figure the code decides (epochs, errors, best temperature) belongs in a code cell's output; when
prose does state one, it must agree with the code. The scan covers every notebook's markdown:

- epoch counts said of the course's **standard teacher** must be ``zoo.RECIPES["teacher"]``'s, and
  those said of the **standard student recipe** ``zoo.RECIPES["student"]``'s;
- test-error counts in a sentence that speaks of the paper (Hinton et al., MNIST) must be figures
  held in ``hinton.PAPER`` / ``transfer_sets.PAPER`` / ``soft_targets.PAPER``.

The rules read paragraphs (blank-line or bullet separated): a paragraph about a teacher and not
about students, in a notebook whose code uses the standard teacher, is about the standard teacher.
The synthetic-notebook tests at the end prove the scan fails when a stale figure is put back.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from labkd import hinton, soft_targets, transfer_sets, zoo

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

EPOCHS = re.compile(r"\b(\d[\d,]*)[\s-]+(?:training\s+)?epochs?\b", re.I)
ERRORS = re.compile(r"\*{0,2}\b(\d[\d,]*)\b\*{0,2}\s+(?:test\s+)?errors\b|\bmakes?\s+\*{0,2}(\d[\d,]*)\b", re.I)
TEACHER = re.compile(r"\bteacher\b", re.I)
STUDENT = re.compile(r"\bstudents?\b|\bstudent's\b", re.I)
STANDARD_TEACHER = re.compile(r"standard teacher|mnist_teacher|course's (?:standard )?teacher", re.I)
STANDARD_STUDENT = re.compile(r"student_config|zoo\.RECIPES\[\"student\"\]|zoo\.RECIPES\(\"student\"|standard student", re.I)
PAPER_CONTEXT = re.compile(r"\bpaper\b|Hinton|Distilling the Knowledge", re.I)
# teachers of their own: lessons that study teachers say so near the number
OTHER_TEACHER = re.compile(r"assistant|early[- ]stopped|stopped early|its own teacher|teachers of (?:its|their) own|"
                           r"each teacher|larger teacher|smaller teacher|teacher of seed|per seed", re.I)


def _paper_errors() -> set[int]:
    """Every test-error figure of Hinton et al. that labkd holds as a constant."""
    out = set()
    for paper in (hinton.PAPER, transfer_sets.PAPER, soft_targets.PAPER):
        for key, value in paper.items():
            if "errors" in key and isinstance(value, int):
                out.add(value)
    return out


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def paragraphs(markdown: str) -> list[str]:
    """Blank-line separated blocks, with every bullet of a list on its own."""
    out = []
    for block in re.split(r"\n\s*\n", markdown):
        out += [p for p in re.split(r"\n(?=\s*(?:[-*]|\d+\.)\s)", block) if p.strip()]
    return out


def sentences(paragraph: str) -> list[str]:
    return [x for x in re.split(r"(?<=[.;!?])\s+(?=[A-Z(*_`$\[])", paragraph) if x.strip()]


def _about_the_standard_teacher(paragraph: str, uses_standard: bool) -> list[str]:
    """The sentences of ``paragraph`` that speak of the standard teacher: those naming it, and, in
    a lesson that uses it, those about "the teacher" (not a student, not a teacher of the lesson's
    own), or about neither when the last sentence before them that named one named the teacher."""
    out, subject = [], None
    for sentence in sentences(paragraph):
        if STANDARD_TEACHER.search(sentence):
            out.append(sentence)
            subject = "teacher"
            continue
        teacher, student = bool(TEACHER.search(sentence)), bool(STUDENT.search(sentence))
        if teacher or student:
            subject = "teacher" if teacher and not student and not OTHER_TEACHER.search(sentence) else "other"
        if uses_standard and subject == "teacher":
            out.append(sentence)
    return out


def stale_figures(nb: nbformat.NotebookNode, name: str = "notebook") -> list[str]:
    """Every figure in the notebook's markdown that contradicts labkd's recipes or paper constants."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    uses_standard = "mnist_teacher" in code
    teacher_epochs = zoo.RECIPES["teacher"].epochs
    student_epochs = zoo.RECIPES["student"].epochs
    paper_errors = _paper_errors()
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for para in paragraphs(cell.source):
            where = f"{name} cell {i}: {' '.join(para.split())[:140]!r}"
            for sentence in _about_the_standard_teacher(para, uses_standard):
                for m in EPOCHS.finditer(sentence):
                    if _number(m.group(1)) != teacher_epochs:
                        problems.append(f"{where}: {m.group(0)!r}, but the standard teacher trains "
                                        f"{teacher_epochs} epochs (zoo.RECIPES[\"teacher\"]); print it from code")
            if STANDARD_STUDENT.search(para):
                for m in EPOCHS.finditer(para):
                    if _number(m.group(1)) != student_epochs:
                        problems.append(f"{where}: {m.group(0)!r}, but the standard student recipe trains "
                                        f"{student_epochs} epochs (zoo.RECIPES[\"student\"]); print it from code")
            for sentence in (x for x in sentences(para) if PAPER_CONTEXT.search(x)):
                for m in ERRORS.finditer(sentence):
                    value = _number(m.group(1) or m.group(2))
                    if value not in paper_errors and value >= 10:
                        problems.append(f"{where}: {m.group(0).strip()!r} is not one of the paper's error counts "
                                        f"held by labkd ({sorted(paper_errors)}); a measured count belongs in a code "
                                        f"cell's output")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_figures_agree_with_the_code(path: Path) -> None:
    problems = stale_figures(nbformat.read(path, as_version=4), path.stem)
    assert not problems, "\n".join(problems)


# --- the scan itself, on synthetic notebooks ------------------------------------------------------


def _notebook(*markdown: str, code: str = "teacher = zoo.mnist_teacher(data, fast=fast)") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)] + [nbformat.v4.new_markdown_cell(m) for m in markdown]
    return nb


def test_a_stale_30_epochs_for_the_standard_teacher_is_caught() -> None:
    assert zoo.RECIPES["teacher"].epochs != 30
    nb = _notebook("## 1. The teacher\n\nThe course's standard teacher is trained once. The first notebook that asks "
                   "for it trains it (30 epochs: allow up to about 20 minutes on a laptop CPU).")
    problems = stale_figures(nb)
    assert len(problems) == 1 and "'30 epochs'" in problems[0] and 'zoo.RECIPES["teacher"]' in problems[0]


def test_the_teacher_of_a_why_paragraph_is_the_standard_one_when_the_lesson_uses_it() -> None:
    stale = _notebook("**Why our numbers may differ.** Ours holds out 5,000 images and the teacher trains for 30 "
                      "epochs with a cosine schedule.")
    assert stale_figures(stale)
    other_lesson = _notebook(stale.cells[1].source, code="teachers = fd.train_teachers(data, seeds, config)")
    assert not stale_figures(other_lesson), "a lesson with teachers of its own may state their epochs"


def test_a_bullet_about_the_teacher_is_read_on_its_own() -> None:
    nb = _notebook("- *Less data.* Our students see 10,000 images for 10 epochs.\n"
                   "- *Different teacher.* Ours is trained for 30 epochs on 55,000 images.")
    problems = stale_figures(nb)
    assert len(problems) == 1 and "30 epochs" in problems[0]


def test_the_right_epoch_count_and_student_epochs_pass() -> None:
    n = zoo.RECIPES["teacher"].epochs
    nb = _notebook(f"The standard teacher trains for {n} epochs.",
                   "The teacher hands its soft targets to students that train for 7 epochs.")
    assert not stale_figures(nb)


def test_a_wrong_standard_student_epoch_count_is_caught() -> None:
    n = zoo.RECIPES["student"].epochs
    assert stale_figures(_notebook(f'`zoo.RECIPES("student", fast)` trains students for {n + 5} epochs.'))
    assert not stale_figures(_notebook(f'`zoo.RECIPES("student", fast)` trains students for {n} epochs.'))


def test_a_paper_figure_that_is_not_the_papers_is_caught() -> None:
    good = _notebook("Hinton et al.'s table: the teacher makes **67** test errors, the labels-only student "
                     "makes **146** and the distilled one **74** errors. Ours made 80 errors.")
    assert not stale_figures(good)
    bad = _notebook("The paper's labels-only student may make fewer errors than ours: it made 170 errors.")
    problems = stale_figures(bad)
    assert len(problems) == 1 and "170" in problems[0]
