"""AES-GCM decryption through libcrypto with the GIL held.

python3-cryptography (cffi) lets go of the GIL around each of the ~11 OpenSSL calls of one
AESGCM.decrypt; with 32 handler threads busy (bench/shared_cache.sh) every such release is a
chance for the threads to fight over the GIL, and that fight cost more CPU than the rest of a
Decrypt call. ctypes.PyDLL calls keep the GIL. Same EVP calls, same result; where libcrypto
cannot be loaded, open() is None and callers use AESGCM. selftest.py compares the two.
"""

import ctypes

from cryptography.exceptions import InvalidTag

_TAG_LEN = 16
_EVP_CTRL_GCM_SET_IVLEN = 0x9
_EVP_CTRL_GCM_SET_TAG = 0x11


def _load():
    try:
        lib = ctypes.PyDLL("libcrypto.so.3")
    except OSError:
        return None
    vp, cp, ip = ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)
    for name, restype, argtypes in (
            ("EVP_aes_128_gcm", vp, []), ("EVP_aes_192_gcm", vp, []), ("EVP_aes_256_gcm", vp, []),
            ("EVP_CIPHER_CTX_new", vp, []), ("EVP_CIPHER_CTX_free", None, [vp]),
            ("EVP_DecryptInit_ex", ctypes.c_int, [vp, vp, vp, cp, cp]),
            ("EVP_CIPHER_CTX_ctrl", ctypes.c_int, [vp, ctypes.c_int, ctypes.c_int, vp]),
            ("EVP_DecryptUpdate", ctypes.c_int, [vp, vp, ip, cp, ctypes.c_int]),
            ("EVP_DecryptFinal_ex", ctypes.c_int, [vp, vp, ip])):
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


_lib = _load()
_CIPHERS = {16: _lib.EVP_aes_128_gcm(), 24: _lib.EVP_aes_192_gcm(),
            32: _lib.EVP_aes_256_gcm()} if _lib else {}


def _open(key, nonce, data, aad):
    """AESGCM(key).decrypt(nonce, data, aad) for a 16, 24 or 32-byte key and a 12-byte
    nonce (what keystore.py uses): the plaintext, or InvalidTag."""
    cipher = _CIPHERS[len(key)]
    if len(data) < _TAG_LEN:
        raise InvalidTag()  # as AESGCM does
    body, tag = data[:-_TAG_LEN], data[-_TAG_LEN:]
    lib = _lib
    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:
        raise MemoryError("EVP_CIPHER_CTX_new")
    try:
        out = ctypes.create_string_buffer(len(body) + _TAG_LEN)
        n = ctypes.c_int(0)
        final = ctypes.c_int(0)
        ok = (lib.EVP_DecryptInit_ex(ctx, cipher, None, None, None) == 1
              and lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_SET_IVLEN, len(nonce), None) == 1
              and lib.EVP_DecryptInit_ex(ctx, None, None, key, nonce) == 1
              and (not aad or lib.EVP_DecryptUpdate(ctx, None, ctypes.byref(n), aad,
                                                    len(aad)) == 1)
              and lib.EVP_DecryptUpdate(ctx, out, ctypes.byref(n), body, len(body)) == 1
              and lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_SET_TAG, _TAG_LEN, tag) == 1)
        if not ok:
            raise RuntimeError("libcrypto refused an AES-GCM setup step")
        size = n.value
        if lib.EVP_DecryptFinal_ex(ctx, ctypes.byref(out, size), ctypes.byref(final)) != 1:
            raise InvalidTag()
        return out.raw[:size + final.value]
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)


open = _open if _lib else None  # noqa: A001 - the module's one function
