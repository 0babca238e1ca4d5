"""The repository stands alone: code and docs cite papers (arXiv ids, docs/papers.md), never an outside document."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("REFERENCE", "../shared")


def test_no_citation_of_documents_outside_the_repository():
    hits = []
    for folder in ("src", "docs", "configs", "benchmarks"):
        for p in (ROOT / folder).rglob("*"):
            if p.suffix not in {".py", ".md", ".toml", ".txt", ".json"} or not p.is_file():
                continue
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if any(word in line for word in OUTSIDE):
                    hits.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    for p in (ROOT / "README.md", ROOT / "LOG.md"):
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if any(word in line for word in OUTSIDE):
                hits.append(f"{p.name}:{n}: {line.strip()[:100]}")
    assert not hits, "cite docs/papers.md or an arXiv id instead:\n" + "\n".join(hits)


def test_papers_doc_cites_the_registered_objectives():
    text = (ROOT / "docs" / "papers.md").read_text(encoding="utf-8")
    for arxiv in ("2402.03300", "2503.20783", "2503.14476", "2507.18071", "2602.05261", "2601.15165"):
        assert arxiv in text
