#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/corpus.jsonl: a generated, deterministic corpus of prompts and
the ids transformers' slow CLIPTokenizer gives them with ftfy installed (as kohya runs it).

Tokenizers (all built from data/bpe_simple_vocab_16e6.txt.gz as CLIP's simple_tokenizer builds
its vocabulary, then kohya-style TI tokens added with tokenizer.add_tokens):
  sd1   pad "<|endoftext|>" (49407)            + TI tokens
  sd2   pad "!" (id 0, an added token, so '!' is split out of every prompt) + TI tokens
  plain pad "<|endoftext|>", no TI tokens (stored only where it differs from sd1)

Our C tokenizer leaves out ftfy's mojibake repair (fix_encoding; docs/tokenizer.md). The
expected ids are therefore made with ftfy.fix_text(..., fix_encoding=False); where the full
ftfy gives other ids, the real ones are stored too ("sd1_hf"), so the test can count how many
corpus prompts the omission changes.

Line 1 is a header {"ti_tokens": [...], "versions": {...}}; then one object per prompt:
  {"p": prompt, ["p_hex": UTF-8 bytes in hex, for prompts holding NUL], "sd1": ids,
   ["sd2": ids], ["plain": ids], ["sd1_hf": ids],
   ["pad": {"L": 77|152|227, "sd1": ids, "sd2": ids}]}
ids are HF encode(add_special_tokens=False) without truncation; "pad" holds
tokenizer(p, padding="max_length", truncation=True, max_length=L).input_ids.
"sd2"/"plain" are omitted when equal to "sd1".

Run: build/refvenv/bin/python tools/reference/make_tokenizer_fixtures.py
"""
import functools
import gzip
import json
import os
import random
import sys
import tempfile

import ftfy
import regex
import transformers
from transformers import CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BPE = os.path.join(ROOT, "data", "bpe_simple_vocab_16e6.txt.gz")
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
MODEL_TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "models", "sd1-tiny", "diffusers", "tokenizer")
TI_TOKENS = ["mychar"] + [f"mychar{i + 1}" for i in range(11)] + ["MyStyle", "MyStyle1", "MyStyle2"]
SEED = 20240601


def write_vocab(tmp):
    lines = gzip.open(BPE).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == len(set(vocab)) == 49408
    vpath, mpath = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
    with open(vpath, "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(mpath, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return vpath, mpath


# ---- the corpus --------------------------------------------------------------------------------

SUBJECTS = ["a cat", "a dog", "portrait of a woman", "an old man", "a castle on a hill", "a red car",
            "a bowl of fruit", "a spaceship", "a dragon", "mountains at sunset", "a cyberpunk city",
            "a girl with blue hair", "a knight in armor", "a forest path", "a robot", "the ocean",
            "a cup of coffee", "a wizard", "a fox in the snow", "a lighthouse"]
STYLES = ["oil painting", "watercolor", "digital art", "photorealistic", "anime style", "concept art",
          "studio lighting", "cinematic", "unreal engine", "octane render", "by greg rutkowski",
          "trending on artstation", "highly detailed", "sharp focus", "bokeh", "35mm film", "HDR", "8k",
          "masterpiece", "best quality", "ultra-detailed", "low poly", "isometric", "pixel art"]
WORDS = ["light", "dark", "beautiful", "intricate", "glowing", "ancient", "tiny", "huge", "misty",
         "golden", "neon", "rainy", "soft", "vivid", "dramatic", "surreal", "cozy", "epic", "quiet",
         "elegant", "ruined", "floating", "crystal", "velvet", "rusty", "frozen", "burning"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
EMOJI = ["😀", "🐱", "🔥", "✨", "❤️", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "1️⃣", "🧑🏿‍🚀",
         "👋🏻", "🤌", "🫠", "☕", "⭐", "🌸", "🎨", "👁‍🗨", "🐈‍⬛", "❤️‍🔥", "©️", "™"]
ACCENTED = ["café", "naïve", "Zürich", "São Paulo", "Ångström", "crème brûlée", "résumé", "façade",
            "Ærøskøbing", "Łódź", "İstanbul", "ısı", "Straße", "GROẞ", "ñandú", "Dvořák", "Þór",
            "e\u0301cole", "n\u0303", "A\u030a", "o\u0308\u0304", "Cafe\u0301", "ǅemal", "ﬁsh"]
CJK = ["猫", "東京タワー", "こんにちは世界", "한국어 텍스트", "ｶﾀｶﾅ", "ﾊﾟﾝ", "中文提示词，高质量", "漢字かな交じり文",
       "\u1100\u1161\u11a8", "𠀋𡈽", "〜", "「引用」", "ラーメン"]
SCRIPTS = ["Привет мир", "МОСКВА", "Ελληνικά", "ΟΔΥΣΣΕΥΣ", "ΣΑΣ", "Σ", "ΑΣ.", "ΑΣ'Α", "مرحبا بالعالم",
           "كتاب", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Ողջույն", "გამარჯობა", "ᏣᎳᎩ",
           "ⲁⲛⲟⲕ", "Ꙗ", "ǲ", "ſtar", "'ſ", "\u0345", "ά\u0345"]
SPACES = ["", " ", "  ", "\t", "\n", "\n\n", "\r\n", " \t \n ", "\u3000", "\u00a0", "\u2028", "\u2029",
          "\u0085", "\u200b", "\ufeff", "\x0b", "\x0c", "\x1c", "\u1680", "\u2003", "\u202f", "\u205f"]
QUOTES = ["“quoted”", "‘single’", "it’s", "don’t", "‚low‘", "„German“", "«French»", "‹x›", "ʼn",
          "‛rev‛", "‟rev‟", "l’été", "\"plain\"", "'plain'"]
FULLWIDTH = ["ＬＯＵＤ　ＮＯＩＳＥＳ", "ｆｕｌｌ ｗｉｄｔｈ", "！？", "１２３", "（ｗｏｒｄ：１．２）", "￥１００",
             "Ｕﾀｰﾝ", "＃ｔａｇ", "＠ｕｓｅｒ", "～", "￣", "￠￡", "ﾞﾟ", "ｰ"]
LIGATURES = ["ﬁne", "ﬂower", "oﬀ", "oﬃce", "waﬄe", "ﬅ", "ﬆar", "Ĳssel", "ĳs", "ǅ", "ǆ", "Ǉ", "ǌ",
             "ŉ"]
ENTITIES = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x27;", "&nbsp;", "&eacute;", "&EACUTE;",
            "&hellip;", "&mdash;", "&amp;amp;", "&foo;", "&#0;", "&#59;", "&#x110000;", "&#128512;",
            "&#x1F600;", "&#X41;", "&#65", "&amp", "&copy;", "&COPY;", "&SZLIG;", "&ntilde;", "&NTILDE;",
            "&nTILDE;", "&Jscr;", "&checkmark;", "&#128;", "&#x80;", "&#x9f;", "&#1;", "&#xD800;",
            "&#12ab;", "&#xzz;", "&#;", "&;", "&aaaaaaaaaaaaaaaaaaaaaaaaa;", "&#0000000000000000000065;",
            "&#x00000000000000000041;", "&NewLine;", "&Tab;", "&lbrace;&rbrace;", "&#8220;x&#8221;",
            "&frac12;", "&fjlig;", "&NotEqualTilde;", "&#xFFFE;", "&#11;"]
SPECIALS = ["<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|EndOfText|>", "<| endoftext |>",
            "<|endoftext", "endoftext|>", "<|endoftext|><|endoftext|>", "<<|endoftext|>>",
            "<|ſtartoftext|>", "<|endoftext|>!", ".<|endoftext|>", "x<|startoftext|>y"]
CONTROLS = ["\x07", "\x1b[31mred\x1b[0m", "\x1b[1;32m", "\x1b[", "\x1b[١m", "\x00", "\x7f", "\u0080",
            "\u0085", "\u0091x\u0092", "\u009d", "\u206a", "\ufff9", "\ufffc", "\u00ad", "\u200d",
            "\u200c", "\u200e", "\u202e", "\U000e0041", "\ud7ff", "\ufffd", "\uffff", "\U0010ffff"]
CONTRACTIONS = ["it's", "IT'S", "we'll", "they've", "I'm", "she'd", "you're", "''s", "'s", "'",
                "o'clock", "rock'n'roll", "'t'", "'RE", "'ll'", "?'s", "don't", "'d'm"]
MOJIBAKE = ["cafÃ©", "â€œquotedâ€\x9d", "SchÃ¶n", "Ã¼ber", "â€™s", "ÃƒÂ©", "sÃ³", "voilÃ  le travail",
            "Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "âœ” done", "Ã\xa0 la", "â€¦", "ã\x83\x84"]
BANGS = ["wow!!!", "hello!world", "!important", "!!", "a!b!c", "yes! no!", "¡hola!", "!?!?", "!<|endoftext|>"]


def weight(rng, w):
    k = rng.randrange(8)
    if k == 0:
        return f"({w}:{rng.choice(['1.2', '0.8', '1.05', '1.5', '2', '.5'])})"
    if k == 1:
        return "(" * rng.randint(1, 3) + w + ")" * rng.randint(1, 3)
    if k == 2:
        return "[" * rng.randint(1, 2) + w + "]" * rng.randint(1, 2)
    if k == 3:
        return f"[{w}:{rng.choice(WORDS)}:{rng.choice(['0.5', '10', '0.25'])}]"
    if k == 4:
        return "{" + w + "}"
    if k == 5:
        return f"\\({w}\\)"
    if k == 6:
        return f"<lora:{w.replace(' ', '_')}:0.7>"
    return w


def sd_prompt(rng, n_words):
    parts = [rng.choice(SUBJECTS)]
    while len(" ".join(parts).split()) < n_words:
        parts.append(rng.choice(STYLES) if rng.random() < 0.5 else " ".join(rng.sample(WORDS, 2)))
    return ", ".join(parts)


def random_unicode(rng):
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2100, 0x23FF),
              (0x2460, 0x27BF), (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFB00, 0xFB4F),
              (0xFE00, 0xFE6F), (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF), (0x1F300, 0x1FAFF), (0x10000, 0x1007F),
              (0xE0000, 0xE007F), (0x80, 0x9F)]
    out = []
    for _ in range(rng.randint(1, 24)):
        a, b = rng.choice(blocks)
        out.append(chr(rng.randint(a, b)))
        if rng.random() < 0.2:
            out.append(" ")
    return "".join(out)


def pick_mix(rng, pools, k):
    return "".join(rng.choice(rng.choice(pools)) + rng.choice(["", " ", ", ", "\n", "  "]) for _ in range(k))


def make_corpus():
    rng = random.Random(SEED)
    prompts = []
    add = prompts.append
    for _ in range(380):
        add(sd_prompt(rng, rng.randint(3, 30)))
    for _ in range(220):
        ws = [weight(rng, rng.choice(WORDS + SUBJECTS + STYLES)) for _ in range(rng.randint(1, 8))]
        add(rng.choice([", ", " ", ","]).join(ws))
    for _ in range(150):
        add("".join(rng.choice(PUNCT + [" ", rng.choice(WORDS)]) for _ in range(rng.randint(1, 20))))
    for _ in range(100):
        add(rng.choice(["8k", "1920x1080", "3.14", "1,000,000", "2023", "v1.5", "4K UHD", "f/1.8", "50mm",
                        "100%", "#1", "x2", "0.5", "²³", "½", "Ⅻ", "٣", "१२", "①", "10³", "1st", "-5"])
            + rng.choice(["", " ", " photo ", ", "]) + str(rng.randint(0, 10 ** rng.randint(1, 12))))
    for _ in range(120):
        add(pick_mix(rng, [EMOJI, WORDS], rng.randint(1, 8)))
    for _ in range(120):
        add(pick_mix(rng, [ACCENTED, WORDS], rng.randint(1, 6)))
    for _ in range(100):
        add(pick_mix(rng, [CJK, WORDS, FULLWIDTH], rng.randint(1, 6)))
    for _ in range(110):
        add(pick_mix(rng, [SCRIPTS, WORDS], rng.randint(1, 6)))
    for _ in range(90):
        add(sd_prompt(rng, rng.randint(130, 260)))
    for s in SPACES:
        add(s)
    for _ in range(40):
        add("".join(rng.choice(SPACES) for _ in range(rng.randint(1, 5))))
    for _ in range(70):
        add(pick_mix(rng, [QUOTES, WORDS], rng.randint(1, 6)))
    for _ in range(70):
        add(pick_mix(rng, [FULLWIDTH, WORDS], rng.randint(1, 6)))
    for _ in range(50):
        add(pick_mix(rng, [LIGATURES, WORDS], rng.randint(1, 5)))
    for e in ENTITIES:
        add(e)
        add(f"rock {e} roll")
    for _ in range(70):
        add(pick_mix(rng, [ENTITIES, WORDS, ["<", "<b>", "\n", "a<b", ">"]], rng.randint(1, 7)))
    add("line one &amp;\nline <two> &amp;\nline three &amp;")
    add("&amp; first\n&lt; second &amp;")
    for s in SPECIALS:
        add(s)
        add(f"a photo {s} of a cat")
    for _ in range(30):
        add(pick_mix(rng, [SPECIALS, WORDS], rng.randint(1, 5)))
    for _ in range(60):
        ws = rng.sample(WORDS, 3)
        add(" ".join("".join(c.upper() if rng.random() < 0.5 else c for c in w) for w in ws))
    for _ in range(80):
        add(pick_mix(rng, [CONTROLS, WORDS, SPACES], rng.randint(1, 6)))
    for c in CONTROLS:
        add(f"x{c}y")
    for _ in range(50):
        add(pick_mix(rng, [CONTRACTIONS, WORDS], rng.randint(1, 5)))
    ti_contexts = ["a photo of {}", "{}", "{} {}", "{}{}", "({}:1.2)", "[{}]", "{},{}", "x{}", "{}s",
                   "{} <|endoftext|> {}", "{}<|endoftext|>", "  {}  ", "{}\n{}", "“{}”", "{}!", "&amp;{}",
                   "ｍｙｃｈａｒ {}", "{}’s", "{} by {}"]
    ti_words = TI_TOKENS + ["MyChar", "MYCHAR", "mychar12", "mychar0", "mychar111", "mystyle", "MyStyle3",
                            "MYSTYLE", "my char", "mych", "mycharmychar", "mychar1mychar2", "MyStyleMyStyle1"]
    for _ in range(200):
        ctx = rng.choice(ti_contexts)
        add(ctx.format(*(rng.choice(ti_words) for _ in range(ctx.count("{}")))))
    for _ in range(150):
        add(random_unicode(rng))
    for m in MOJIBAKE:
        add(m)
        add(f"a {m} photo")
    for b in BANGS:
        add(b)
        add(f"{b} mychar!")
    for _ in range(60):
        a = rng.choice(prompts)
        b = rng.choice(prompts)
        add(a + rng.choice([" ", "\n", ", ", ""]) + b)
    seen, unique = set(), []
    for p in prompts:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def main():
    with tempfile.TemporaryDirectory() as tmp:
        vpath, mpath = write_vocab(tmp)
        if os.path.isdir(MODEL_TOKENIZER):
            same = (json.load(open(vpath, encoding="utf-8")) ==
                    json.load(open(os.path.join(MODEL_TOKENIZER, "vocab.json"), encoding="utf-8")))
            if not same:
                sys.exit("the fixture models' vocab.json differs from the one built from data/")

        def make(pad, ti, fix_encoding=True):
            tok = CLIPTokenizer(vpath, mpath, pad_token=pad, model_max_length=77)
            if ti and tok.add_tokens(TI_TOKENS) != len(TI_TOKENS):
                sys.exit("a TI token is already in the vocabulary")
            if not fix_encoding:
                tok.fix_text = functools.partial(ftfy.fix_text, fix_encoding=False)
            return tok

        toks = {
            "sd1": make("<|endoftext|>", True, False),
            "sd2": make("!", True, False),
            "plain": make("<|endoftext|>", False, False),
            "sd1_hf": make("<|endoftext|>", True, True),
        }
        corpus = make_corpus()
        os.makedirs(OUT_DIR, exist_ok=True)
        out = os.path.join(OUT_DIR, "corpus.jsonl")
        lengths = [77, 152, 227]
        n_moji = n_long = 0
        with open(out, "w", encoding="utf-8") as f:
            header = {"ti_tokens": TI_TOKENS, "versions": {
                "transformers": transformers.__version__, "ftfy": ftfy.__version__, "regex": regex.__version__,
                "python": sys.version.split()[0]}}
            f.write(json.dumps(header, ensure_ascii=False) + "\n")
            for i, p in enumerate(corpus):
                ids = {k: t(p, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
                       for k, t in toks.items()}
                rec = {"p": p, "sd1": ids["sd1"]}
                if "\x00" in p:  # JSON readers in C lose what follows a NUL: give the bytes too
                    rec["p_hex"] = p.encode("utf-8").hex()
                for k in ("sd2", "plain", "sd1_hf"):
                    if ids[k] != ids["sd1"]:
                        rec[k] = ids[k]
                n_moji += "sd1_hf" in rec
                n_long += len(ids["sd1"]) > 225
                if i % 6 == 0 and "\x00" not in p:
                    L = lengths[(i // 6) % 3]
                    rec["pad"] = {"L": L}
                    for k in ("sd1", "sd2"):
                        rec["pad"][k] = toks[k](p, padding="max_length", truncation=True, max_length=L)["input_ids"]
                f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {out}: {len(corpus)} prompts, {n_long} over 225 tokens, "
          f"{n_moji} changed by ftfy's mojibake repair, {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
