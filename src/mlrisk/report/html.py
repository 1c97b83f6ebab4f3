"""The one HTML writer: a self-contained page (plotly.js inlined once in the head, never from a CDN;
no request leaves the file) with a navigation bar, sections, static tables and sortable, filterable
data tables. Chart modules return plotly figures; :func:`mlrisk.report.plotting.figure_div` turns
them into fragments for these sections."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mlrisk.io import json_safe, write_text

Formatter = Callable[[Any], str]

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1c2733;background:#f4f6f8}
nav{position:sticky;top:0;z-index:10;background:#1c2733;display:flex;flex-wrap:wrap;gap:2px;padding:0 16px}
nav a{color:#dfe6ee;text-decoration:none;padding:10px 12px;font-weight:500}
nav a:hover{background:#2e3e50}
nav .brand{color:#fff;font-weight:700;margin-right:12px}
main{max-width:1320px;margin:0 auto;padding:12px 20px 40px}
section{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.12);margin:16px 0;padding:8px 18px 14px;scroll-margin-top:48px}
h2{margin:8px 0 6px;font-size:20px}
h3{margin:14px 0 4px;font-size:15px;color:#37474f}
.note{color:#607d8b;font-size:12px;margin:2px 0 6px}
.facts{display:flex;flex-wrap:wrap;gap:8px 22px;margin:6px 0}
.facts div{min-width:120px}.facts b{display:block;font-size:11px;color:#607d8b;font-weight:600;text-transform:uppercase}
.verdict{border-radius:5px;padding:10px 14px;margin:8px 0;font-weight:600;border:1px solid}
.verdict.good{background:#e8f5e9;color:#1b5e20;border-color:#a5d6a7}
.verdict.bad{background:#ffebee;color:#b71c1c;border-color:#ef9a9a}
.box{border:1px solid #b0bec5;border-radius:5px;padding:4px 14px 6px;margin:8px 0;background:#f8fafb}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:8px 16px}.grid2>div{min-width:0}
@media (max-width:1000px){.grid2{grid-template-columns:1fr}}
table.t{border-collapse:collapse;font-size:12.5px;margin:4px 0}
table.t td,table.t th{border-bottom:1px solid #e3e8ec;padding:3px 9px;text-align:right;white-space:nowrap}
table.t td:first-child,table.t th:first-child{text-align:left}
table.t th{background:#eef2f5}.scroll table.t th{position:sticky;top:0}
table.t tr.hl td{background:#fff8e1;font-weight:600}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:" \\2195";color:#9aa7b2}
table.sortable th.asc:after{content:" \\25B2";color:#1c2733}table.sortable th.desc:after{content:" \\25BC";color:#1c2733}
.scroll{max-height:460px;overflow:auto;border:1px solid #e3e8ec;border-radius:4px}
input.filter{padding:5px 8px;width:320px;border:1px solid #b0bec5;border-radius:4px;margin:4px 0}
.pos{color:#1b5e20}.neg{color:#b71c1c}
"""

# Data tables: rows live in a JSON block; the script renders at most `limit` rows of the filtered,
# sorted rows, so tens of thousands of trades stay responsive.
JS = """
function mlTable(id){
  const spec=JSON.parse(document.getElementById(id+'-data').textContent);
  const box=document.getElementById(id),tbl=box.querySelector('table'),body=tbl.tBodies[0],
        info=box.querySelector('.count'),filt=box.querySelector('input.filter');
  let rows=spec.rows.map((r,i)=>({r:r,i:i,s:r.map(String).join(' ').toLowerCase()})),col=-1,asc=true;
  function cmp(a,b){const x=a.r[col],y=b.r[col];
    if(typeof x==='number'&&typeof y==='number')return x-y;
    if(x===null)return 1;if(y===null)return -1;return String(x).localeCompare(String(y));}
  function render(){
    const q=filt?filt.value.trim().toLowerCase():'';
    let shown=q?rows.filter(o=>q.split(/\\s+/).every(w=>o.s.includes(w))):rows.slice();
    if(col>=0){shown.sort((a,b)=>asc?cmp(a,b):-cmp(a,b));}
    const html=shown.slice(0,spec.limit).map(o=>'<tr'+(o.i===spec.highlight?' class="hl"':'')+'>'+o.r.map((v,j)=>
      '<td class="'+(spec.signed[j]&&typeof v==='number'?(v>0?'pos':(v<0?'neg':'')):'')+'">'+spec.fmt(v,j)+'</td>').join('')+'</tr>');
    body.innerHTML=html.join('');
    info.textContent=shown.length>spec.limit?('showing '+spec.limit+' of '+shown.length+' rows (filter or sort to see others)'):(shown.length+' rows');
  }
  spec.fmt=(v,j)=>{if(v===null)return '';const d=spec.digits[j];
    if(typeof v!=='number'||d===null)return String(v).replace(/[&<>]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
    return spec.pct[j]?(100*v).toFixed(d)+' %':v.toFixed(d);};
  tbl.tHead.querySelectorAll('th').forEach((th,j)=>th.addEventListener('click',()=>{
    asc=(col===j)?!asc:true;col=j;
    tbl.tHead.querySelectorAll('th').forEach(h=>h.classList.remove('asc','desc'));
    th.classList.add(asc?'asc':'desc');render();}));
  if(filt)filt.addEventListener('input',render);
  render();
}
document.addEventListener('DOMContentLoaded',()=>document.querySelectorAll('.datatable').forEach(b=>mlTable(b.id)));
"""


@dataclass
class Section:
    """One section of the page: an anchor id, a title for the navigation bar and its HTML parts."""
    id: str
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> "Section":
        self.parts.extend(parts)
        return self


def esc(text: Any) -> str:
    return html.escape(str(text))


def facts(items: dict[str, str]) -> str:
    """Label/value pairs in a row (the page header)."""
    return '<div class="facts">' + "".join(f"<div><b>{esc(k)}</b>{esc(v)}</div>" for k, v in items.items()) + "</div>"


def verdict_box(text: str, good: bool) -> str:
    return f'<div class="verdict {"good" if good else "bad"}">{esc(text)}</div>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def static_table(df: pd.DataFrame, formats: dict[str, Formatter] | None = None, highlight: int | None = None) -> str:
    """A plain table; ``formats`` maps column names to functions that render a value."""
    formats = formats or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for i, rec in enumerate(df.itertuples(index=False)):
        cells = "".join(f"<td>{esc(formats.get(c, _default_fmt)(v))}</td>" for c, v in zip(df.columns, rec))
        rows.append(f'<tr{" class=hl" if i == highlight else ""}>{cells}</tr>')
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _default_fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def data_table(table_id: str, df: pd.DataFrame, digits: dict[str, int] | None = None, percent: tuple[str, ...] = (),
               signed: tuple[str, ...] = (), limit: int = 300, highlight: int | None = None, filterable: bool = True) -> str:
    """A table sorted by clicking a header (again: the other way) and filtered by typed words; its rows
    travel as JSON and at most ``limit`` are drawn at a time. ``digits`` per numeric column (default 4
    significant), ``percent`` columns are fractions shown in %, ``signed`` columns are coloured by sign."""
    digits = digits or {}
    cols = list(df.columns)
    values = []
    for rec in df.itertuples(index=False):
        row = []
        for v in rec:
            if isinstance(v, pd.Timestamp):
                v = v.strftime("%Y-%m-%d %H:%M")
            elif isinstance(v, pd.Timedelta):
                v = str(v)
            elif isinstance(v, (np.integer, np.floating, np.bool_)):
                v = v.item()
            row.append(v)
        values.append(row)
    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in cols}
    spec = {"rows": values, "limit": limit, "highlight": highlight,
            "digits": [digits.get(c, 4) if numeric[c] else None for c in cols],  # None: shown as is
            "pct": [c in percent for c in cols], "signed": [c in signed for c in cols]}
    payload = json.dumps(json_safe(spec), allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    search = f'<input class="filter" type="search" placeholder="filter rows (words)" aria-label="filter {esc(table_id)}">' if filterable else ""
    return (f'<div class="datatable" id="{esc(table_id)}">{search} <span class="note count"></span>'
            f'<div class="scroll"><table class="t sortable"><thead><tr>{head}</tr></thead><tbody></tbody></table></div>'
            f'<script type="application/json" id="{esc(table_id)}-data">{payload}</script></div>')


def page(title: str, sections: list[Section], plotly_js: str) -> str:
    """The whole document: plotly.js once in the head, a sticky navigation bar, the sections."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>' for s in sections)
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{esc(title)}</title><link rel='icon' href='data:,'><style>{CSS}</style>"
            f"<script type='text/javascript'>{plotly_js}</script><script>{JS}</script></head>"
            f"<body><nav><a class='brand' href='#top'>{esc(title)}</a>{nav}</nav><main id='top'>{body}</main></body></html>\n")


def write_page(path: str | Path, document: str) -> None:
    """Write the page atomically."""
    write_text(path, document)
