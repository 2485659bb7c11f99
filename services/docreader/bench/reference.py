#!/usr/bin/env python3
"""Parses each corpus file with the common Python library for its format, to markdown-ish
text as our parser does, and reports the time per file. Usage: reference.py DIR MIN_SECONDS
Prints JSON: {"txt": {"bytes": N, "seconds": S, "runs": R}, ...} (seconds per run)."""

import csv
import io
import json
import os
import sys
import time

DIR, MIN_SECONDS = sys.argv[1], float(sys.argv[2])


def txt(data):
    from charset_normalizer import from_bytes

    return str(from_bytes(data).best())


def html(data):
    from bs4 import BeautifulSoup

    return BeautifulSoup(data, "lxml").get_text("\n")


def pdf(data):
    from pypdf import PdfReader

    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


def docx(data):
    import docx as d

    doc = d.Document(io.BytesIO(data))
    out = [p.text for p in doc.paragraphs]
    for t in doc.tables:
        for row in t.rows:
            out.append("|".join(c.text for c in row.cells))
    return "\n".join(out)


def xlsx(data):
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    return "\n".join("|".join("" if v is None else str(v) for v in row) for ws in wb for row in ws.iter_rows(values_only=True))


def xls(data):
    import xlrd

    wb = xlrd.open_workbook(file_contents=data)
    return "\n".join("|".join(str(v) for v in ws.row_values(r)) for ws in wb.sheets() for r in range(ws.nrows))


def csv_(data):
    return "\n".join("|".join(r) for r in csv.reader(io.StringIO(data.decode("utf-8"))))


def pptx(data):
    from pptx import Presentation

    out = []
    for s in Presentation(io.BytesIO(data)).slides:
        for shape in s.shapes:
            if shape.has_text_frame:
                out.append(shape.text_frame.text)
    return "\n".join(out)


def epub(data):
    import ebooklib
    from bs4 import BeautifulSoup
    from ebooklib import epub as e

    path = "/tmp/weknora-bench.epub"
    with open(path, "wb") as f:
        f.write(data)
    book = e.read_epub(path)
    return "\n".join(BeautifulSoup(i.get_content(), "lxml").get_text("\n") for i in book.get_items_of_type(ebooklib.ITEM_DOCUMENT))


PARSERS = {"txt": txt, "html": html, "pdf": pdf, "docx": docx, "xlsx": xlsx, "xls": xls, "csv": csv_, "pptx": pptx, "epub": epub}
results = {}
for name in sorted(os.listdir(DIR)):
    fmt = name.rsplit(".", 1)[-1]
    if fmt not in PARSERS:
        continue
    data = open(os.path.join(DIR, name), "rb").read()
    PARSERS[fmt](data)  # warm up: imports, caches
    runs, start = 0, time.perf_counter()
    while True:
        PARSERS[fmt](data)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_SECONDS and runs >= 3:
            break
    results[fmt] = {"bytes": len(data), "seconds": elapsed / runs, "runs": runs}
print(json.dumps(results))
