"""FEVER and SciFact → text pairs, from tiny trees laid out like the official downloads."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from audiovec.cli import main
from audiovec.data.prepare.claims import fever_detokenize, fever_title
from audiovec.data.prepare.fever import fever_to_pairs
from audiovec.data.prepare.scifact import scifact_to_pairs
from audiovec.data.text_pairs import TextPairDataset, collate_text_pairs, read_text_pairs
from audiovec.errors import DataError


def _jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def _claim(cid: int, label: str, claim: str, *sets: list[tuple[str, int]]) -> dict:
    evidence = (
        [[[cid * 10 + i, cid * 100 + i, page, sid] for page, sid in s] for i, s in enumerate(sets)]
        if sets
        else [[[cid, None, None, None]]]
    )
    return {"id": cid, "verifiable": "VERIFIABLE", "label": label, "claim": claim, "evidence": evidence}


NCW = "Nikolaj_Coster-Waldau"
SAV = "Savages_-LRB-2012_film-RRB-"
CAFE_NFC = unicodedata.normalize("NFC", "Café_Society")
CAFE_NFD = unicodedata.normalize("NFD", CAFE_NFC)


@pytest.fixture
def fever(tmp_path: Path) -> dict[str, Path]:
    """claims (train + dev), and a wiki-pages folder of 2 files with an unneeded broken line."""
    wiki = tmp_path / "fever" / "wiki-pages"
    ncw_lines = (
        "0\tNikolaj Coster-Waldau -LRB- born 27 July 1970 -RRB- is a Danish actor and producer .\tDanish\tDenmark\n"
        "1\tHe graduated from the Danish National School of Performing Arts in Copenhagen in 1993 .\n"
        "2\t\n"
        "3\tHe is known for `` Game of Thrones '' ."
    )
    _jsonl(
        wiki / "wiki-001.jsonl",
        [
            {"id": "", "text": "", "lines": ""},
            {"id": NCW, "text": "unused", "lines": ncw_lines},
            '{"id": "Broken_page", "text": "never parsed',  # not needed: only its id is read
        ],
    )
    _jsonl(
        wiki / "wiki-002.jsonl",
        [
            {"id": "Unrelated", "text": "x", "lines": "0\tNothing here ."},
            {
                "id": SAV,
                "text": "unused",
                "lines": "0\tSavages is a 2012 American crime thriller film directed by Oliver Stone .\n"
                "1\tIt stars Taylor Kitsch .",
            },
            {"id": CAFE_NFC, "text": "unused", "lines": "0\tCafé Society is a 2016 film ."},
        ],
    )
    train = _jsonl(
        tmp_path / "fever" / "train.jsonl",
        [
            # two annotators chose the same sentence (one row), a third a two-page set
            _claim(
                1,
                "SUPPORTS",
                "Nikolaj Coster-Waldau is a Danish actor.",
                [(NCW, 0)],
                [(NCW, 0)],
                [(NCW, 1), (SAV, 0)],
            ),
            _claim(2, "REFUTES", "Nikolaj Coster-Waldau is a Swedish actor.", [(NCW, 0)]),
            _claim(3, "NOT ENOUGH INFO", "Nikolaj Coster-Waldau likes tea."),
            _claim(4, "SUPPORTS", "Savages was directed by Oliver Stone.", [(SAV, 0)], [("Missing_page", 0)]),
            _claim(5, "REFUTES", "Savages was directed by Spike Lee.", [(SAV, 0)]),
            # an empty sentence and a sentence number past the page: both sets skipped, claim unused
            _claim(6, "SUPPORTS", "Coster-Waldau studied in Copenhagen.", [(NCW, 2)], [(NCW, 9)]),
            # the claim names the page in NFD, the dump in NFC
            _claim(7, "REFUTES", "Café Society is a novel.", [(CAFE_NFD, 0)]),
        ],
    )
    dev = _jsonl(
        tmp_path / "fever" / "shared_task_dev.jsonl",
        [_claim(8, "SUPPORTS", "Coster-Waldau appeared in Game of Thrones.", [(NCW, 3)])],
    )
    return {"train": train, "dev": dev, "wiki": wiki}


E_NCW0 = "Nikolaj Coster-Waldau: Nikolaj Coster-Waldau (born 27 July 1970) is a Danish actor and producer."
E_MULTI = (
    "Nikolaj Coster-Waldau: He graduated from the Danish National School of Performing Arts in Copenhagen in 1993. "
    "Savages (2012 film): Savages is a 2012 American crime thriller film directed by Oliver Stone."
)
E_SAV0 = "Savages (2012 film): Savages is a 2012 American crime thriller film directed by Oliver Stone."
E_CAFE = "Café Society: Café Society is a 2016 film."
E_NCW3 = 'Nikolaj Coster-Waldau: He is known for "Game of Thrones".'


def _triples(rows: list[dict]) -> list[tuple]:
    return [(r["anchor"], r["positive"], r.get("negative")) for r in rows]


def test_fever_detokenize_and_titles() -> None:
    assert fever_detokenize("I do n't know John 's dog -LRB- a $ 5 pup -RRB- , ok .") == (
        "I don't know John's dog (a $5 pup), ok."
    )
    assert fever_detokenize("He said `` hi '' -LSB- 1 -RSB- .") == 'He said "hi" [1].'
    assert fever_title(SAV) == "Savages (2012 film)"
    assert fever_title("Star_Wars-COLON-_Episode_IV") == "Star Wars: Episode IV"


def test_fever_retrieval_rows_and_counts(fever: dict[str, Path]) -> None:
    rows, counts = fever_to_pairs([fever["train"], fever["dev"]], fever["wiki"])
    c1, c2, c4, c5, c7, c8 = (
        "Nikolaj Coster-Waldau is a Danish actor.",
        "Nikolaj Coster-Waldau is a Swedish actor.",
        "Savages was directed by Oliver Stone.",
        "Savages was directed by Spike Lee.",
        "Café Society is a novel.",
        "Coster-Waldau appeared in Game of Thrones.",
    )
    assert _triples(rows) == [
        (c1, E_NCW0, None),
        (c1, E_MULTI, None),
        (c2, E_NCW0, None),
        (c4, E_SAV0, None),
        (c5, E_SAV0, None),
        (c7, unicodedata.normalize("NFC", E_CAFE), None),
        (c8, E_NCW3, None),
    ]
    assert {r["source"] for r in rows} == {"fever"}
    assert counts == {
        "claims": 8,
        "supports": 4,
        "refutes": 3,
        "not_enough_info": 1,
        "evidence_sets": 11,
        "missing_page": 1,
        "missing_sentence": 2,
        "claims_used": 6,
        "rows": 7,
    }
    plain, _ = fever_to_pairs([fever["train"]], fever["wiki"], titles=False)
    assert plain[0]["positive"] == "Nikolaj Coster-Waldau (born 27 July 1970) is a Danish actor and producer."
    assert plain[1]["positive"] == (
        "He graduated from the Danish National School of Performing Arts in Copenhagen in 1993. "
        "Savages is a 2012 American crime thriller film directed by Oliver Stone."
    )
    # the parent of wiki-pages/ is accepted too
    assert (
        fever_to_pairs([fever["train"]], fever["wiki"].parent)[0]
        == fever_to_pairs([fever["train"]], fever["wiki"])[0]
    )


def test_fever_nli_rows(fever: dict[str, Path]) -> None:
    rows, counts = fever_to_pairs([fever["train"], fever["dev"]], fever["wiki"], mode="nli")
    assert _triples(rows) == [
        (E_NCW0, "Nikolaj Coster-Waldau is a Danish actor.", "Nikolaj Coster-Waldau is a Swedish actor."),
        (E_MULTI, "Nikolaj Coster-Waldau is a Danish actor.", None),
        (E_SAV0, "Savages was directed by Oliver Stone.", "Savages was directed by Spike Lee."),
        (E_NCW3, "Coster-Waldau appeared in Game of Thrones.", None),
    ]  # the Café Society claim is refuted only: no supported claim to pair it with
    assert (counts["rows"], counts["claims_used"]) == (4, 5)
    rows, counts = fever_to_pairs([fever["train"]], fever["wiki"], mode="nli", require_negative=True)
    assert [r["anchor"] for r in rows] == [E_NCW0, E_SAV0] and counts["claims_used"] == 4
    with pytest.raises(ValueError, match="require_negative needs mode='nli'"):
        fever_to_pairs([fever["train"]], fever["wiki"], require_negative=True)


def test_fever_malformed_input_names_file_and_line(fever: dict[str, Path], tmp_path: Path) -> None:
    good = _claim(1, "SUPPORTS", "A claim.", [(NCW, 0)])
    bad = _jsonl(tmp_path / "bad.jsonl", [good, {**good, "evidence": [[[1, 2, NCW, "zero"]]]}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: evidence set 0: expected \[annotation_id"):
        fever_to_pairs([bad], fever["wiki"])
    test = _jsonl(tmp_path / "shared_task_test.jsonl", [{"id": 1, "claim": "No label."}])
    with pytest.raises(DataError, match=r"shared_task_test\.jsonl:1: 'label' .*unlabelled test file"):
        fever_to_pairs([test], fever["wiki"])
    wiki = tmp_path / "wiki2"
    _jsonl(
        wiki / "wiki-001.jsonl", [{"id": "Other", "lines": ""}, {"id": NCW, "lines": "0\tok .\nzero\tbad"}]
    )
    with pytest.raises(DataError, match=r"wiki-001\.jsonl:2: page 'Nikolaj_Coster-Waldau': 'lines' entry"):
        fever_to_pairs([fever["train"]], wiki)
    _jsonl(wiki / "wiki-001.jsonl", [{"id": NCW, "lines": "0\tok ."}, f'{{"id": "{SAV}", "lines": '])
    with pytest.raises(DataError, match=r"wiki-001\.jsonl:2: invalid JSON"):
        fever_to_pairs([fever["train"]], wiki)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no wiki-\*\.jsonl files"):
        fever_to_pairs([fever["train"]], tmp_path / "empty")
    with pytest.raises(DataError, match="FEVER wiki-pages folder not found"):
        fever_to_pairs([fever["train"]], tmp_path / "absent")


def test_fever_cli(fever: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "fever_pairs.jsonl"
    args = ["data", "fever", str(fever["train"]), str(fever["dev"]), "--wiki", str(fever["wiki"])]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: 7 text pairs (retrieval) from 8 claims" in printed
    assert "SUPPORTS 4, REFUTES 3, NOT ENOUGH INFO 1" in printed and "6 claims used" in printed
    assert "evidence sets: 11, skipped 1 (page not in the dump), 2 (sentence missing or empty)" in printed
    expected, _ = fever_to_pairs([fever["train"], fever["dev"]], fever["wiki"])
    assert read_text_pairs(out) == expected
    dataset = TextPairDataset(out)
    assert len(dataset) == 7
    batch = collate_text_pairs([dataset[i] for i in range(len(dataset))])
    assert (
        batch["anchors"][0] == "Nikolaj Coster-Waldau is a Danish actor." and not batch["has_negative"].any()
    )

    nli = tmp_path / "nli.jsonl"
    assert main([*args, "--out", str(nli), "--mode", "nli", "--require-negative", "--no-titles"]) == 0
    rows = read_text_pairs(nli)
    assert len(rows) == 2 and all(r["negative"] for r in rows)
    assert rows[0]["anchor"] == "Nikolaj Coster-Waldau (born 27 July 1970) is a Danish actor and producer."
    assert collate_text_pairs(TextPairDataset(nli).rows)["has_negative"].all()

    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "x.jsonl"), "--require-negative"]) == 2
    assert "--require-negative needs --mode nli" in capsys.readouterr().err
    # no claim's page in this dump: an error, nothing written
    empty_wiki = tmp_path / "empty-wiki"
    _jsonl(empty_wiki / "wiki-001.jsonl", [{"id": "Unrelated", "lines": "0\tx ."}])
    none = tmp_path / "none.jsonl"
    assert main(["data", "fever", str(fever["train"]), "--wiki", str(empty_wiki), "--out", str(none)]) == 1
    assert "no text pairs" in capsys.readouterr().err and not none.exists()


# --- SciFact ---------------------------------------------------------------------------------------------


@pytest.fixture
def scifact(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "scifact" / "data"
    corpus = _jsonl(
        data / "corpus.jsonl",
        [
            {
                "doc_id": 4983,
                "title": "Aspirin and fever",
                "abstract": [
                    "Aspirin is an antipyretic.",
                    "It was tested in 2001.",
                    "Fever fell in all arms. ",
                ],
                "structured": False,
            },
            {"doc_id": 5836, "title": "B study", "abstract": ["Background.", "B holds."], "structured": True},
            {"doc_id": 7777, "title": "Unused", "abstract": ["Nothing."], "structured": False},
        ],
    )
    train = _jsonl(
        data / "claims_train.jsonl",
        [
            {
                "id": 1,
                "claim": "0-dimensional biomaterials show inductive properties.",
                "evidence": {},
                "cited_doc_ids": [31715818],
            },
            {
                "id": 3,
                "claim": "Aspirin lowers fever.",
                "evidence": {
                    "4983": [
                        {"sentences": [2, 0], "label": "SUPPORT"},
                        {"sentences": [1], "label": "SUPPORT"},
                    ]
                },
                "cited_doc_ids": [4983],
            },
            {
                "id": 4,
                "claim": "Aspirin does not lower fever.",
                "evidence": {"4983": [{"sentences": [0, 2], "label": "CONTRADICT"}]},
                "cited_doc_ids": [4983],
            },
            {
                "id": 5,
                "claim": "X causes Y.",
                "evidence": {
                    "99999": [{"sentences": [0], "label": "SUPPORT"}],
                    "5836": [{"sentences": [5], "label": "SUPPORT"}],
                },
                "cited_doc_ids": [99999, 5836],
            },
        ],
    )
    dev = _jsonl(
        data / "claims_dev.jsonl",
        [
            {
                "id": 7,
                "claim": "B is true.",
                "evidence": {"5836": [{"sentences": [1], "label": "SUPPORT"}]},
                "cited_doc_ids": [5836],
            },
            {"id": 9, "claim": "A test-style claim without evidence."},
        ],
    )
    return {"train": train, "dev": dev, "corpus": corpus}


S_AB = "Aspirin and fever: Aspirin is an antipyretic. Fever fell in all arms."
S_A1 = "Aspirin and fever: It was tested in 2001."
S_B = "B study: B holds."


def test_scifact_retrieval_rows_and_counts(scifact: dict[str, Path]) -> None:
    rows, counts = scifact_to_pairs([scifact["train"], scifact["dev"]], scifact["corpus"])
    assert _triples(rows) == [
        ("Aspirin lowers fever.", S_AB, None),
        ("Aspirin lowers fever.", S_A1, None),
        ("Aspirin does not lower fever.", S_AB, None),
        ("B is true.", S_B, None),
    ]
    assert {r["source"] for r in rows} == {"scifact"}
    assert counts == {
        "claims": 6,
        "no_evidence": 2,
        "rationales": 6,
        "support": 5,
        "contradict": 1,
        "missing_doc": 1,
        "missing_sentence": 1,
        "claims_used": 3,
        "rows": 4,
    }
    plain, _ = scifact_to_pairs([scifact["train"]], scifact["corpus"], titles=False)
    assert plain[0]["positive"] == "Aspirin is an antipyretic. Fever fell in all arms."


def test_scifact_nli_rows(scifact: dict[str, Path]) -> None:
    rows, counts = scifact_to_pairs([scifact["train"], scifact["dev"]], scifact["corpus"], mode="nli")
    assert _triples(rows) == [
        (S_AB, "Aspirin lowers fever.", "Aspirin does not lower fever."),
        (S_A1, "Aspirin lowers fever.", None),
        (S_B, "B is true.", None),
    ]
    assert (counts["rows"], counts["claims_used"]) == (3, 3)
    rows, _ = scifact_to_pairs([scifact["train"]], scifact["corpus"], mode="nli", require_negative=True)
    assert _triples(rows) == [(S_AB, "Aspirin lowers fever.", "Aspirin does not lower fever.")]


def test_scifact_malformed_input_names_file_and_line(scifact: dict[str, Path], tmp_path: Path) -> None:
    bad = _jsonl(
        tmp_path / "claims_bad.jsonl",
        [
            {"id": 1, "claim": "ok", "evidence": {}},
            {"id": 2, "claim": "bad label", "evidence": {"4983": [{"sentences": [0], "label": "NEI"}]}},
        ],
    )
    with pytest.raises(DataError, match=r"claims_bad\.jsonl:2: evidence for doc 4983: 'label' must be"):
        scifact_to_pairs([bad], scifact["corpus"])
    bad = _jsonl(
        tmp_path / "claims_bad.jsonl",
        [{"id": 2, "claim": "x", "evidence": {"4983": [{"sentences": [], "label": "SUPPORT"}]}}],
    )
    with pytest.raises(DataError, match=r"claims_bad\.jsonl:1: .*'sentences' must be a non-empty list"):
        scifact_to_pairs([bad], scifact["corpus"])
    corpus = _jsonl(tmp_path / "corpus.jsonl", [{"doc_id": 4983, "title": "t", "abstract": "not a list"}])
    with pytest.raises(DataError, match=r"corpus\.jsonl:1: 'abstract' must be a list"):
        scifact_to_pairs([scifact["train"]], corpus)
    with pytest.raises(DataError, match=r"missing\.jsonl: SciFact corpus not found"):
        scifact_to_pairs([scifact["train"]], tmp_path / "missing.jsonl")


def test_scifact_cli(scifact: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scifact_pairs.jsonl"
    claims = ["--claims", str(scifact["train"]), str(scifact["dev"]), "--corpus", str(scifact["corpus"])]
    assert main(["data", "scifact", *claims, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: 4 text pairs (retrieval) from 6 claims (2 without evidence); 3 claims used" in printed
    assert "rationales: 6 (SUPPORT 5, CONTRADICT 1), skipped 1 (document not in the corpus), 1 (" in printed
    expected, _ = scifact_to_pairs([scifact["train"], scifact["dev"]], scifact["corpus"])
    assert read_text_pairs(out) == expected
    assert len(TextPairDataset(out)) == 4

    nli = tmp_path / "scifact_nli.jsonl"
    assert main(["data", "scifact", *claims, "--out", str(nli), "--mode", "nli"]) == 0
    batch = collate_text_pairs(TextPairDataset(nli).rows)
    assert batch["negatives"] == ["Aspirin does not lower fever.", None, None]
    assert batch["has_negative"].tolist() == [True, False, False]
