"""Calibration of the mixed-language filter (filters/language.py) on real clean text.

Clean rows (expected kept): the MATH-500 `solution`s (LaTeX-heavy) and the GSM8K test
`answer`s (terse arithmetic with <<calculator>> annotations) from tests/data and curate/data.
Recall: each clean row again with one foreign sentence (of five written per language,
the kind a reasoning model switches into) inserted at a random sentence boundary.
For comparison, whole-trace lid.176 (one prediction for the whole text, as datatrove's
LanguageFilter does): a row counts as caught when the top label is not `en`.

    python benchmarks/language_calibration.py [--json out.json]

Prints the share of clean rows dropped (with the reasons), recall per inserted
language (any rule / the foreign-sentence rule alone / whole-trace lid), and the
throughput of the filter on these rows.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

import polars as pl

from curate.filters.language import Language, lid_model, strip_non_prose

REPO = Path(__file__).resolve().parent.parent
MATH500 = REPO / "tests" / "data" / "math500_test.jsonl"  # with worked solutions (MIT; tests/data/README.md)
GSM8K = REPO / "curate" / "data" / "gsm8k_test.jsonl"

FOREIGN = {
    "zh": ["首先，我们需要计算所有苹果的总数，然后再除以人数。",
           "让我再检查一下这个结果是否正确，因为前面的计算可能有误。",
           "所以这个方程的两个根之和应该等于系数的相反数。",
           "等一下，我好像把单位弄错了，应该先换算成分钟。",
           "因此最终答案就是我们刚才得到的这个数值。"],
    "ru": ["Сначала нужно найти общее количество яблок, а потом разделить его на число детей.",
           "Давайте ещё раз проверим это вычисление, чтобы убедиться в правильности ответа.",
           "Значит, сумма корней этого уравнения равна коэффициенту с обратным знаком.",
           "Подождите, кажется, я перепутал единицы измерения, нужно перевести всё в минуты.",
           "Таким образом, окончательный ответ совпадает с найденным значением."],
    "fr": ["Tout d'abord, il faut calculer le nombre total de pommes avant de les partager.",
           "Vérifions encore une fois ce calcul pour être sûr que la réponse est correcte.",
           "Donc la somme des racines de cette équation est égale au coefficient opposé.",
           "Attendez, je crois que je me suis trompé d'unité, il faut tout convertir en minutes.",
           "Par conséquent, la réponse finale est bien la valeur que nous venons de trouver."],
    "de": ["Zuerst müssen wir die Gesamtzahl der Äpfel berechnen und dann durch die Kinder teilen.",
           "Lass mich diese Rechnung noch einmal überprüfen, um sicher zu sein.",
           "Also ist die Summe der Wurzeln dieser Gleichung gleich dem negativen Koeffizienten.",
           "Moment, ich glaube, ich habe die Einheiten verwechselt, alles muss in Minuten sein.",
           "Daher ist die endgültige Antwort genau der Wert, den wir gerade gefunden haben."],
    "es": ["Primero tenemos que calcular el número total de manzanas y luego dividirlo entre los niños.",
           "Voy a revisar este cálculo otra vez para asegurarme de que la respuesta es correcta.",
           "Entonces la suma de las raíces de esta ecuación es igual al coeficiente opuesto.",
           "Espera, creo que me equivoqué con las unidades, hay que pasar todo a minutos.",
           "Por lo tanto, la respuesta final es el valor que acabamos de obtener."],
    "ja": ["まず、りんごの総数を計算してから、子どもの人数で割る必要があります。",
           "この計算が正しいかどうか、もう一度確認してみましょう。",
           "したがって、この方程式の二つの解の和は係数の符号を変えたものになります。",
           "ちょっと待って、単位を間違えたかもしれないので、分に直します。",
           "よって、最終的な答えは先ほど求めた値になります。"],
}
BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n+")


def clean_rows() -> pl.DataFrame:
    rows = [{"source": "math500", "completion": json.loads(line)["solution"]}
            for line in MATH500.open()]
    rows += [{"source": "gsm8k", "completion": json.loads(line)["answer"]} for line in GSM8K.open()]
    return pl.DataFrame(rows)


def insert(text: str, sentence: str, rng: random.Random) -> str:
    """`sentence` at a random sentence boundary of the prose: a boundary inside a maths
    display or an [asy] figure would put it where no reader sees prose (and the filter
    strips it), so up to 20 boundaries are tried, then the end of the text."""
    cuts = [m.end() for m in BOUNDARY.finditer(text)]
    rng.shuffle(cuts)
    for at in cuts[:20]:
        mixed = text[:at] + sentence + " " + text[at:]
        if sentence[:8] in strip_non_prose(mixed):
            return mixed
    return text + "\n\n" + sentence


def whole_trace_foreign(texts: list[str]) -> list[bool]:
    labels, _ = lid_model().predict([" ".join(t.split()) for t in texts], k=1)
    return [label[0] != "__label__en" for label in labels]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    f = Language()
    lid_model()
    clean = clean_rows()
    t = time.perf_counter()
    d = f(clean)
    seconds = time.perf_counter() - t
    out = {"clean": {}, "recall": {}, "docs_per_s": round(clean.height / seconds)}
    for source in ("math500", "gsm8k"):
        mask = (clean["source"] == source).to_list()
        dropped = [r for r, m in zip(d.reason.to_list(), mask) if m and r is not None]
        whole = sum(w for w, m in zip(whole_trace_foreign(clean["completion"].to_list()), mask) if m)
        n = sum(mask)
        out["clean"][source] = {"rows": n, "dropped": len(dropped), "share": round(len(dropped) / n, 4),
                                "whole_trace_lid_dropped": whole, "reasons": dropped[:5]}
        print(f"clean {source}: {n} rows, dropped {len(dropped)} ({len(dropped) / n:.2%}); "
              f"whole-trace lid would drop {whole} ({whole / n:.2%})")
        for r in dropped[:5]:
            print(f"    {r}")
    rng = random.Random(0)
    texts = clean["completion"].to_list()
    for lang, sentences in FOREIGN.items():
        mixed = [insert(t, rng.choice(sentences), rng) for t in texts]
        reasons = f(pl.DataFrame({"completion": mixed})).reason.to_list()
        caught = sum(r is not None for r in reasons)
        by_sentence = sum(r is not None and r.startswith("foreign sentence") for r in reasons)
        whole = sum(whole_trace_foreign(mixed))
        out["recall"][lang] = {"caught": round(caught / len(texts), 4), "foreign_sentence_rule": round(by_sentence / len(texts), 4),
                               "whole_trace_lid": round(whole / len(texts), 4),
                               "rules": dict(Counter(r.split(" ")[0] for r in reasons if r))}
        print(f"inserted {lang}: caught {caught / len(texts):.1%} (foreign-sentence rule alone "
              f"{by_sentence / len(texts):.1%}); whole-trace lid {whole / len(texts):.1%}")
    total = sum(v["caught"] for v in out["recall"].values()) / len(FOREIGN)
    out["recall"]["all"] = round(total, 4)
    print(f"all inserted languages: caught {total:.1%}; filter throughput on the clean rows "
          f"{out['docs_per_s']:,} docs/s (one process)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
