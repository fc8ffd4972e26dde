"""Tokenizer and chat-template fixtures (spec §4.1, §7).

Builds a small Llama-style SentencePiece BPE model (byte fallback, split digits, identity normalisation, dummy
prefix) from a generated corpus, converts it with transformers to `LlamaTokenizer` (the tokenizers-backed class
that AutoTokenizer returns in v5) with `legacy=False`, adds `<image>`, `<video>`, `<pad>` the way the Video-LLaVA
conversion did, and writes:

  test/fixtures/tokenizer/small/                 save_pretrained output (what v5 writes)
  test/fixtures/tokenizer/videollava_style/      same vocabulary, but a tokenizer_config.json shaped like the
                                                 LanguageBind/Video-LLaVA-7B-hf one and a tokenizer.json with the
                                                 legacy (Prepend + Replace) normaliser of the Vicuna file
  test/fixtures/tokenizer/expected.json          what AutoTokenizer.from_pretrained(...) produces

Deterministic: fixed seeds, single-threaded SentencePiece training, sorted JSON keys.
"""

import io
import json
import os
import random
import shutil
import sys
import tempfile

import sentencepiece as spm
import transformers
from transformers import AddedToken, AutoTokenizer, LlamaTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "tokenizer")
SMALL = os.path.join(OUT, "small")
VL_STYLE = os.path.join(OUT, "videollava_style")

# The Video-LLaVA default chat template. The TypeScript default (src/processing/chat_template.ts) must equal this
# string; the test checks that against `expected.json["chat_template"]["template"]`.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "    {%- if message['role'] != 'system' -%}\n"
    "        {{- message['role'] | upper -}}{{- ': ' -}}\n"
    "    {%- endif -%}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{- message['content'] + ' ' -}}\n"
    "    {%- else -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{- '<image>\\n' -}}\n"
    "            {%- elif item['type'] == 'video' -%}\n"
    "                {{- '<video>\\n' -}}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'text' -%}\n"
    "                {{- item['text'] + ' ' -}}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{- 'ASSISTANT:' -}}\n"
    "{%- endif -%}\n"
)

SYLLABLES = ["ka", "to", "ri", "me", "su", "la", "no", "vi", "de", "o", "a", "e", "i", "be", "ch", "th", "sh", "qu",
             "st", "pr", "an", "er", "in", "on", "is", "at"]
WORDS = ["the", "video", "image", "funny", "baby", "book", "reading", "what", "why", "is", "this", "USER",
         "ASSISTANT", "cats", "doing", "see", "a", "and", "in", "of"]
ACCENTED = ["café", "naïve", "über", "Ärger", "résumé", "señor", "façade", "Ωmega", "привет", "мир"]
CJK = ["你好", "世界", "日本語", "中文", "漢字"]
PUNCT = ["?", "!", ".", ",", ":", "(", ")", "-"]


def corpus_line(rng):
    words = []
    for _ in range(rng.randint(3, 14)):
        r = rng.random()
        if r < 0.45:
            words.append(rng.choice(WORDS))
        elif r < 0.75:
            words.append("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))))
        elif r < 0.83:
            words.append(rng.choice(ACCENTED))
        elif r < 0.88:
            words.append(rng.choice(CJK))
        elif r < 0.95:
            words.append(str(rng.randint(0, 99999)))
        else:
            words.append(rng.choice(PUNCT))
    return " ".join(words)


def train_sentencepiece():
    rng = random.Random(1234)
    lines = [corpus_line(rng) for _ in range(3000)]
    model = io.BytesIO()
    # Llama-2's trainer settings, scaled down: BPE, byte fallback, split digits, identity normalisation, dummy
    # prefix, whitespace kept as is.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=700, byte_fallback=True,
        split_digits=True, normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, split_by_unicode_script=True, max_sentencepiece_length=16, minloglevel=2)
    return model.getvalue()


def build_small():
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "tokenizer.model"), "wb") as f:
            f.write(train_sentencepiece())
        tok = LlamaTokenizer.from_pretrained(tmp, legacy=False, add_bos_token=True, add_eos_token=False)
    # As the Video-LLaVA conversion did: two special, non-normalised placeholders, then a pad token, pad left.
    tok.add_tokens([AddedToken("<image>", special=True, normalized=False),
                    AddedToken("<video>", special=True, normalized=False)], special_tokens=True)
    tok.add_special_tokens({"pad_token": "<pad>"})
    tok.padding_side = "left"
    shutil.rmtree(SMALL, ignore_errors=True)
    tok.save_pretrained(SMALL)


def build_videollava_style():
    """Same vocabulary; config files shaped like the -hf checkpoint's (tokenizer.json with the legacy normaliser)."""
    shutil.rmtree(VL_STYLE, ignore_errors=True)
    os.makedirs(VL_STYLE)
    with open(os.path.join(SMALL, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    tj["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    tj["pre_tokenizer"] = None
    tj["model"]["unk_token"] = "<unk>"
    for t in tj["added_tokens"]:
        t["normalized"] = t["content"] not in ("<unk>", "<s>", "</s>", "<image>", "<video>", "<pad>")
    with open(os.path.join(VL_STYLE, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    ids = {t["content"]: t["id"] for t in tj["added_tokens"]}
    added = {str(ids[c]): {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True}
             for c in ["<unk>", "<s>", "</s>", "<image>", "<video>", "<pad>"]}
    config = {
        "add_bos_token": True, "add_eos_token": False, "add_prefix_space": True, "added_tokens_decoder": added,
        "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": False,
        "model_max_length": 4096, "pad_token": "<pad>", "padding_side": "left", "sp_model_kwargs": {},
        "spaces_between_special_tokens": False, "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    with open(os.path.join(VL_STYLE, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2, sort_keys=True)
    special_map = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    with open(os.path.join(VL_STYLE, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special_map, f, indent=2, sort_keys=True)


def long_prompt():
    rng = random.Random(99)
    parts = []
    for i in range(160):
        parts.append(corpus_line(rng))
        if i % 40 == 7:
            parts.append("<image>")
        if i % 50 == 13:
            parts.append("\n\n😀 ")
    return " ".join(parts)


ENCODE_CASES = [
    ("ascii", "Hello world, this is a test."),
    ("question", "Why is this video funny?"),
    ("accents", "café naïve über Ärger résumé señor façade"),
    ("cyrillic_greek", "привет мир Ωmega"),
    ("cjk_known", "你好世界 日本語"),
    ("cjk_unknown", "猫が好きです"),
    ("emoji", "I love 😀 and 🎉🎉!"),
    ("emoji_zwj", "family 👨‍👩‍👧 done"),
    ("whitespace_run", "a    b     c"),
    ("leading_space", " leading space"),
    ("leading_spaces", "   three leading"),
    ("trailing_spaces", "trailing   "),
    ("only_space", " "),
    ("only_spaces", "     "),
    ("tabs", "\tindent\tand\ttabs\t"),
    ("newline", "line one\nline two"),
    ("double_newline", "para one\n\npara two"),
    ("only_newlines", "\n\n"),
    ("crlf", "windows\r\nline"),
    ("digits", "12345 and 3.14159 and 2024-05-15"),
    ("mixed_digits_letters", "abc123def 0x1F"),
    ("punctuation", "(hello)! [world]? {x}: \"quoted\" 'single'"),
    ("nbsp", "non\u00a0breaking\u2003space"),
    ("control_chars", "bell\u0007null\u0000end"),
    ("usr_video", "USER: <video>\nWhy is this video funny? ASSISTANT:"),
    ("usr_image", "USER: <image>\nWhat are the cats in the image doing? ASSISTANT:"),
    ("image_image_x", "<image><image>x"),
    ("a_pad_b", "a<pad>b"),
    ("a_pad_space_b", "a<pad> b"),
    ("space_around_special", "x <image> y"),
    ("special_at_start", "<video>\nWhat do you see?"),
    ("special_at_end", "look at this <image>"),
    ("bos_eos_literal", "<s>hi</s> there"),
    ("unk_literal", "an <unk> token"),
    ("partial_special", "<imag <video <pad> video>"),
    ("multi_turn", "USER: <video>\nWhat do you see in this video? ASSISTANT: A baby reading a book. USER: Why is it"
                   " funny? ASSISTANT:"),
    ("mixed_media", "USER: <image>\nWhat is this? ASSISTANT: A cat. USER: <video>\nAnd this? ASSISTANT:"),
    ("system_prompt", "A chat between a curious human and an artificial intelligence assistant. USER: <image>\nhi"
                      " ASSISTANT:"),
    ("empty", ""),
    ("long_prompt", None),  # filled by long_prompt()
]


def decode_extra(tok):
    """Hand-picked id sequences for decoding (byte tokens <0x00>..<0xFF> sit at ids 3..258 in this vocabulary)."""
    b = lambda v: tok.convert_tokens_to_ids(f"<0x{v:02X}>")  # noqa: E731
    a, is_, meta = (tok.convert_tokens_to_ids(t) for t in ("▁a", "▁is", "▁"))
    return {
        "lone_lead_byte": [tok.bos_token_id, b(0xE2), a],
        "truncated_then_valid": [b(0xE2), b(0x82), b(0xF0), b(0x9F), b(0x98), b(0x80), is_],
        "valid_euro": [b(0xE2), b(0x82), b(0xAC)],
        "euro_then_lead": [b(0xE2), b(0x82), b(0xAC), b(0xE2), is_],
        "leading_metaspaces": [meta, meta, is_],
        "specials_only": [tok.bos_token_id, *tok.convert_tokens_to_ids(["<image>", "<video>", "<pad>"]),
                          tok.eos_token_id],
        "out_of_range": [is_, 99999, is_],
    }


def ids_of(tokenizer, text, **kwargs):
    return tokenizer(text, **kwargs)["input_ids"]


def encode_cases(tok):
    """Each string through the fixture tokenizer, the -hf-style directory, and the legacy / no-prefix variants."""
    vl = AutoTokenizer.from_pretrained(VL_STYLE)
    legacy = AutoTokenizer.from_pretrained(SMALL, legacy=True)
    no_prefix = AutoTokenizer.from_pretrained(SMALL, add_prefix_space=False)
    cases = []
    for name, text in ENCODE_CASES:
        if text is None:
            text = long_prompt()
        ids = ids_of(tok, text)
        short = len(ids) < 200  # the long prompt keeps only the main variants, to keep the fixture small
        cases.append({
            "name": name,
            "text": text,
            "ids": ids,
            "ids_no_special": ids_of(tok, text, add_special_tokens=False) if short else None,
            "tokens": tok.convert_ids_to_tokens(ids) if short else None,
            "ids_videollava_style": ids_of(vl, text),
            "ids_legacy": ids_of(legacy, text) if short else None,
            "ids_no_prefix_space": ids_of(no_prefix, text) if short else None,
            "decode": tok.decode(ids),
            "decode_skip": tok.decode(ids, skip_special_tokens=True),
            "decode_no_prefix_space_skip":
                no_prefix.decode(ids_of(no_prefix, text), skip_special_tokens=True) if short else None,
        })
    return cases, vl.model_max_length


def batch_cases():
    """Padded / truncated batches, each with a freshly loaded tokenizer."""
    video_prompt = "USER: " + "<video>" * 16 + "\nWhy is this video funny? ASSISTANT:"
    batch_texts = ["USER: <image>\nWhat is this? ASSISTANT:", "hi", "", video_prompt, "a b c d e f g h i j k"]
    batches = []
    settings = [
        ("longest_left", dict(padding=True)),
        ("longest_right", dict(padding=True, padding_side="right")),
        ("max_length_12", dict(padding="max_length", max_length=12, truncation=False)),
        ("max_length_32_truncate", dict(padding="max_length", max_length=32, truncation=True)),
        ("truncate_8_right", dict(truncation=True, max_length=8)),
        ("truncate_8_left_side", dict(truncation=True, max_length=8, truncation_side="left")),
        ("max_length_only", dict(max_length=6)),
        ("pad_multiple_8", dict(padding=True, pad_to_multiple_of=8)),
        ("no_special_longest", dict(padding=True, add_special_tokens=False)),
        ("truncate_1", dict(truncation=True, max_length=1)),
    ]
    for name, kw in settings:
        t = AutoTokenizer.from_pretrained(SMALL)
        if "truncation_side" in kw:
            t.truncation_side = kw.pop("truncation_side")
        enc = t(batch_texts, **kw)
        batches.append({"name": name, "options": kw, "truncation_side": t.truncation_side,
                        "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return {"texts": batch_texts, "cases": batches}


def decode_cases(tok, cases):
    decodes = []
    decode_inputs = {c["name"]: c["ids"] for c in cases if c["name"] != "long_prompt"}
    decode_inputs.update(decode_extra(tok))
    for name, ids in decode_inputs.items():
        entry = {"name": name, "ids": ids}
        for skip in (False, True):
            for clean in (False, True):
                entry[f"skip={skip},clean={clean}"] = tok.decode(
                    ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
        decodes.append(entry)
    return decodes


def added_token_flag_cases():
    """Added tokens with lstrip / rstrip / single_word, added after loading (Python add_tokens)."""
    strip_tok = AutoTokenizer.from_pretrained(SMALL)
    strip_specs = [{"content": "<L>", "lstrip": True, "special": True}, {"content": "<R>", "rstrip": True},
                   {"content": "<W>", "single_word": True}]
    strip_tok.add_tokens([AddedToken(s["content"], lstrip=s.get("lstrip", False), rstrip=s.get("rstrip", False),
                                     single_word=s.get("single_word", False), special=s.get("special", False),
                                     normalized=False) for s in strip_specs])
    strip_cases = []
    for text in ["a  <L> b", "a <R>   b", "x<W>y and x <W> y", "  <L>", "<R>  ", "<L><R><W>"]:
        ids = ids_of(strip_tok, text)
        strip_cases.append({"text": text, "ids": ids, "decode": strip_tok.decode(ids),
                            "decode_skip": strip_tok.decode(ids, skip_special_tokens=True)})
    ids = [strip_tok.convert_tokens_to_ids(s["content"]) for s in strip_specs]
    return {"tokens": strip_specs, "ids": ids, "cases": strip_cases}


CONVERSATIONS = [
    ("single_video", [{"role": "user", "content": [{"type": "video"},
                                                   {"type": "text", "text": "Why is this video funny?"}]}]),
    ("single_image", [{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                                   "text": "What are the cats in the image doing?"}]}]),
    ("multi_turn", [
        {"role": "user", "content": [{"type": "video"},
                                     {"type": "text", "text": "What do you see in this video?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A baby reading a book."}]},
        {"role": "user", "content": [{"type": "text", "text": "Why is it funny?"}]}]),
    ("mixed_image_video", [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "And this?"}]}]),
    ("image_and_video_one_turn", [{"role": "user", "content": [
        {"type": "text", "text": "Compare"}, {"type": "image"}, {"type": "video"},
        {"type": "text", "text": "these two."}]}]),
    ("system_message", [
        {"role": "system", "content": "A chat between a curious human and an artificial intelligence assistant."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}]),
    ("string_content", [{"role": "user", "content": "Just text, no media."}]),
    ("unicode_text", [{"role": "user", "content": [{"type": "video"},
                                                   {"type": "text", "text": "Qu'est-ce que c'est ? 😀\nnew"}]}]),
    ("ends_with_assistant", [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]},
        {"role": "assistant", "content": "A baby reads."}]),
]


def chat_cases(tok):
    """Python renders our template (tokenizer.apply_chat_template passes the special tokens map, as the processor)."""
    chats = []
    for name, messages in CONVERSATIONS:
        for gen in (True, False):
            rendered = tok.apply_chat_template(messages, chat_template=CHAT_TEMPLATE, tokenize=False,
                                               add_generation_prompt=gen)
            chats.append({"name": name, "messages": messages, "add_generation_prompt": gen, "rendered": rendered})
    return {"template": CHAT_TEMPLATE, "special_tokens_map": tok.special_tokens_map, "cases": chats}


def main():
    build_small()
    build_videollava_style()
    tok = AutoTokenizer.from_pretrained(SMALL)
    cases, vl_max_length = encode_cases(tok)
    token_ids = list(range(0, 12)) + [258, 259, 260, 625, 699, 700, 701, 702]
    tokens = ["▁the", "<image>", "<video>", "<pad>", "<s>", "</s>", "<unk>", "<0x0A>", "not-a-token", "▁", "é"]
    expected = {
        "generator": {"transformers": transformers.__version__, "python": sys.version.split()[0],
                      "tokenizer_class": type(tok).__name__},
        "special": {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id,
                    "unk": tok.unk_token_id, "image": tok.convert_tokens_to_ids("<image>"),
                    "video": tok.convert_tokens_to_ids("<video>"), "vocab_size": tok.vocab_size,
                    "len": len(tok), "padding_side": tok.padding_side, "truncation_side": tok.truncation_side,
                    "all_special_ids": sorted(tok.all_special_ids),
                    "videollava_style_model_max_length": vl_max_length},
        "encode": cases,
        "batches": batch_cases(),
        "decode": decode_cases(tok, cases),
        "added_token_flags": added_token_flag_cases(),
        "convert_ids_to_tokens": {"ids": token_ids, "tokens": tok.convert_ids_to_tokens(token_ids)},
        "convert_tokens_to_ids": {"tokens": tokens, "ids": tok.convert_tokens_to_ids(tokens)},
        "chat_template": chat_cases(tok),
    }
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        f.write(compact_json(expected) + "\n")


def compact_json(value, indent=0):
    """Indented JSON whose lists of scalars sit on one line (keeps the id lists small and diffable)."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {compact_json(v, indent + 1)}" for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + compact_json(v, indent + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


if __name__ == "__main__":
    main()
