"""bench/faq_pairs.py: question headings and the first sentence of their answers."""

import json
from pathlib import Path

from bench.faq_pairs import first_answer, main, pairs_from_html, sentences

PAGE = """<html><body><section id="general"><h2>General Questions<a class="headerlink">¶</a></h2>
<section id="q1"><h3><a href="#id1">Is there a source code level debugger?</a>
<a class="headerlink" href="#q1">¶</a></h3>
<p>Yes.</p>
<p>The built-in function <a href="x"><code><span class="pre">breakpoint()</span></code></a> drops
into one. Several more are described below.</p>
</section>
<section id="q2"><h3>How do I convert a string to a number?<a class="headerlink">¶</a></h3>
<p>For integers, use the built-in <code>int()</code> type constructor, e.g. <code>int('144')</code>
gives 144. Similarly, float() converts to floating point.</p>
</section>
<section id="q3"><h3>Performance notes</h3><p>Not a question, so not a pair.</p></section>
<section id="q4"><h3>What is empty?</h3><div class="highlight"><pre>x = 1</pre></div></section>
</section></body></html>"""


def test_each_question_heading_gives_its_first_answer_sentence() -> None:
    pairs = list(pairs_from_html(PAGE, "faq/programming.html"))
    assert pairs == [
        {
            "question": "Is there a source code level debugger?",
            # "Yes." alone says nothing checkable: the next sentence is joined to it.
            "answer": "Yes. The built-in function breakpoint() drops into one.",
            "sources": ["faq/programming.html"],
        },
        {
            "question": "How do I convert a string to a number?",
            "answer": "For integers, use the built-in int() type constructor, e.g. int('144') "
            "gives 144.",
            "sources": ["faq/programming.html"],
        },
    ]


def test_sentences_do_not_split_at_abbreviations_or_dotted_names() -> None:
    text = "Use os.path.join, e.g. Here. Then call it! Done? yes."
    assert sentences(text) == ["Use os.path.join, e.g. Here.", "Then call it!", "Done? yes."]
    assert first_answer([]) is None


def test_the_script_writes_one_json_pair_per_line(tmp_path: Path) -> None:
    (tmp_path / "html" / "faq").mkdir(parents=True)
    (tmp_path / "html" / "faq" / "programming.html").write_text(PAGE, encoding="utf-8")
    out = tmp_path / "qa.jsonl"
    assert main(["--root", str(tmp_path / "html"), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["question"] for line in lines] == [
        "Is there a source code level debugger?",
        "How do I convert a string to a number?",
    ]
