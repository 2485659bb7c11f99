#!/usr/bin/env python3
"""Writes the benchmark corpus: one realistic, mid-sized document per format, from
deterministic text (Chinese and English), with the usual writer library of each format.
Usage: make_corpus.py OUT_DIR"""

import csv
import io
import os
import random
import sys

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = random.Random(42)
WORDS_EN = "backup restore migrate deploy service health metric latency chunk index query tenant upload parse".split()
WORDS_ZH = ["数据库", "备份", "恢复", "演练", "服务", "健康", "检查", "索引", "查询", "文档", "解析", "上传", "知识库", "租户"]


def sentence(n=14):
    words = [rng.choice(WORDS_ZH if rng.random() < 0.5 else WORDS_EN) for _ in range(n)]
    return " ".join(words) + "。"


def paragraphs(n):
    return [" ".join(sentence() for _ in range(4)) for _ in range(n)]


def write_text():
    text = "\n\n".join(paragraphs(3000))
    with open(f"{OUT}/corpus.txt", "wb") as f:
        f.write(text.encode("gbk"))


def write_html():
    parts = ["<html><head><title>corpus</title></head><body>"]
    for i, p in enumerate(paragraphs(3000)):
        if i % 20 == 0:
            parts.append(f"<h2>Section {i}</h2>")
        parts.append(f"<p>{p} <a href='/doc/{i}'>link</a></p>")
        if i % 100 == 0:
            parts.append("<table>" + "".join(f"<tr><td>{r}</td><td>{sentence(3)}</td></tr>" for r in range(10)) + "</table>")
    parts.append("</body></html>")
    with open(f"{OUT}/corpus.html", "w", encoding="utf-8") as f:
        f.write("".join(parts))


def write_csv():
    with open(f"{OUT}/corpus.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        for r in range(40000):
            w.writerow([r, rng.choice(WORDS_ZH), rng.choice(WORDS_EN), rng.randint(0, 10**6), sentence(4)])


def write_docx():
    import docx

    d = docx.Document()
    for i, p in enumerate(paragraphs(1500)):
        if i % 25 == 0:
            d.add_heading(f"Section {i}", level=2)
        d.add_paragraph(p)
        if i % 150 == 0:
            t = d.add_table(rows=10, cols=3)
            for r in range(10):
                for c in range(3):
                    t.cell(r, c).text = sentence(2)
    d.save(f"{OUT}/corpus.docx")


def write_xlsx():
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for r in range(20000):
        ws.append([r, rng.choice(WORDS_ZH), rng.choice(WORDS_EN), rng.randint(0, 10**6), sentence(3)])
    wb.save(f"{OUT}/corpus.xlsx")


def write_xls():
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("data")
    for r in range(20000):
        for c, v in enumerate([r, rng.choice(WORDS_ZH), rng.choice(WORDS_EN), rng.randint(0, 10**6), sentence(3)]):
            ws.write(r, c, v)
    wb.save(f"{OUT}/corpus.xls")


def write_pptx():
    from pptx import Presentation

    p = Presentation()
    for i in range(300):
        s = p.slides.add_slide(p.slide_layouts[1])
        s.shapes.title.text = f"Slide {i}"
        s.placeholders[1].text = "\n".join(sentence() for _ in range(5))
    p.save(f"{OUT}/corpus.pptx")


def write_pdf():
    from fpdf import FPDF

    f = FPDF()
    f.set_font("helvetica", size=10)
    for i in range(100):
        f.add_page()
        for _ in range(40):
            f.cell(text=" ".join(rng.choice(WORDS_EN) for _ in range(12)), new_x="LMARGIN", new_y="NEXT")
    f.output(f"{OUT}/corpus.pdf")


def write_epub():
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("weknora-bench")
    book.set_title("corpus")
    chapters = []
    for i in range(60):
        c = epub.EpubHtml(title=f"Chapter {i}", file_name=f"ch{i}.xhtml", lang="zh")
        c.content = f"<h1>Chapter {i}</h1>" + "".join(f"<p>{p}</p>" for p in paragraphs(40))
        book.add_item(c)
        chapters.append(c)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = chapters
    epub.write_epub(f"{OUT}/corpus.epub", book)


for make in (write_text, write_html, write_csv, write_docx, write_xlsx, write_xls, write_pptx, write_pdf, write_epub):
    make()
