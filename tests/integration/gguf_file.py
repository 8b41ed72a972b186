"""Just enough of the GGUF format (its header's key/value section, as the spec lays it out) for the
integration tests: read a model's vocabulary, so that a test can name tokens by id as logit_bias
clients do, and write a copy of a model whose chat template is another, so that a test can serve
the default weights under a template that defines tool calls."""
import shutil
import struct

_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # scalar types' bytes
_STRING, _ARRAY, _U32 = 8, 9, 4


class _Reader:
    def __init__(self, f):
        self.f = f

    def read(self, fmt):
        return struct.unpack("<" + fmt, self.f.read(struct.calcsize("<" + fmt)))[0]

    def string(self):
        return self.f.read(self.read("Q")).decode("utf-8", "replace")

    def skip(self, kind):
        if kind == _STRING:
            self.f.seek(self.read("Q"), 1)
        elif kind == _ARRAY:
            inner, n = self.read("I"), self.read("Q")
            if inner in _SIZES:
                self.f.seek(n * _SIZES[inner], 1)
            else:
                for _ in range(n):
                    self.skip(inner)
        else:
            self.f.seek(_SIZES[kind], 1)

    def header(self):
        assert self.f.read(4) == b"GGUF", "not a GGUF file"
        version, n_tensors, n_kv = self.read("I"), self.read("Q"), self.read("Q")
        return version, n_tensors, n_kv


def _value(path, wanted, read):
    """read(reader, kind) at the value of key `wanted`; None when the file has no such key."""
    with open(path, "rb") as f:
        r = _Reader(f)
        _, _, n_kv = r.header()
        for _ in range(n_kv):
            key, kind = r.string(), r.read("I")
            if key == wanted:
                return read(r, kind)
            r.skip(kind)
    return None


def _string_list(r, kind):
    assert kind == _ARRAY and r.read("I") == _STRING
    return [r.string() for _ in range(r.read("Q"))]


def tokens(path):
    """tokenizer.ggml.tokens: the vocabulary, by token id."""
    vocab = _value(path, "tokenizer.ggml.tokens", _string_list)
    assert vocab is not None, f"{path} has no tokenizer.ggml.tokens"
    return vocab


def chat_template(path):
    return _value(path, "tokenizer.chat_template", lambda r, kind: r.string()) or ""


def with_chat_template(source, target, template):
    """A copy of `source` at `target` whose tokenizer.chat_template is `template`. Tensor offsets
    are relative to the aligned start of the data, so only the header changes (and its padding)."""
    encoded = template.encode()
    with open(source, "rb") as f:
        r = _Reader(f)
        _, n_tensors, n_kv = r.header()
        out = bytearray()
        head_end = f.tell()
        f.seek(0)
        out += f.read(head_end)
        alignment, replaced = 32, False
        for _ in range(n_kv):
            start = f.tell()
            key, kind = r.string(), r.read("I")
            if key == "general.alignment":
                assert kind == _U32
                alignment = r.read("I")
                f.seek(start)
                out += f.read(len(key) + 8 + 4 + 4)
                continue
            r.skip(kind)
            end = f.tell()
            if key == "tokenizer.chat_template":
                out += struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", _STRING)
                out += struct.pack("<Q", len(encoded)) + encoded
                replaced = True
            else:
                f.seek(start)
                out += f.read(end - start)
        assert replaced, f"{source} has no tokenizer.chat_template to replace"
        for _ in range(n_tensors):  # name, dims, type, offset: copied as they are
            start = f.tell()
            r.string()
            f.seek(8 * r.read("I") + 4 + 8, 1)
            end = f.tell()
            f.seek(start)
            out += f.read(end - start)
        data = -(-f.tell() // alignment) * alignment
        out += b"\0" * (-len(out) % alignment)
        f.seek(data)
        with open(target, "wb") as t:
            t.write(out)
            shutil.copyfileobj(f, t)
