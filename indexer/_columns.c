/* indexer._columns: the transpose of CallColumns.from_rows (indexer/columns.py), in C.

The idea: a parser process hands its calls to the writer as numpy columns. Built in Python, the
transpose cost about 1.8 us a row: a tuple of Python objects per column, then numpy converting
each one. Here each field of each row is read once and written straight into its column's
buffer. Text fields get codes in the order the texts first appear; the caller sorts that
vocabulary and renumbers (columns.py). A field of an unexpected type, or an integer out of
range, raises, and the caller uses the Python transpose, the reference.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The size of one value of a column of `kind`; 0 for an unknown kind. */
static Py_ssize_t width(char kind) {
    switch (kind) {
    case 'q': /* int64 */
    case 'l': /* int64, None: -1 */
    case 'd': /* float64, None: NaN */
        return 8;
    case 't': /* int32 code of a str, None: -1 */
        return 4;
    case '?': /* bool */
        return 1;
    default:
        return 0;
    }
}

/* The text's code (its position in `vocab`, appended when new); -1 with an exception set. */
static int32_t code_of(PyObject *text, PyObject *codes, PyObject *vocab) {
    PyObject *found = PyDict_GetItemWithError(codes, text);
    if (found) return (int32_t)PyLong_AsLong(found);
    if (PyErr_Occurred()) return -1;
    Py_ssize_t n = PyList_GET_SIZE(vocab);
    if (n >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many distinct texts");
        return -1;
    }
    PyObject *code = PyLong_FromSsize_t(n);
    if (!code) return -1;
    int failed = PyDict_SetItem(codes, text, code) < 0 || PyList_Append(vocab, text) < 0;
    Py_DECREF(code);
    return failed ? -1 : (int32_t)n;
}

/* Write field `v` of kind `kind` at `out`; 0, or -1 with an exception set. */
static int put(char kind, PyObject *v, char *out, PyObject *codes, PyObject *vocab) {
    long long q;
    double d;
    int32_t c;
    switch (kind) {
    case 'l':
        if (v == Py_None) {
            q = -1;
            memcpy(out, &q, 8);
            return 0;
        }
        /* fall through */
    case 'q':
        if (!PyLong_Check(v)) goto wrong;
        q = PyLong_AsLongLong(v);
        if (q == -1 && PyErr_Occurred()) return -1;
        memcpy(out, &q, 8);
        return 0;
    case 'd':
        if (v == Py_None) d = NAN;
        else if (PyFloat_Check(v) || PyLong_Check(v)) {
            d = PyFloat_AsDouble(v);
            if (d == -1.0 && PyErr_Occurred()) return -1;
        } else goto wrong;
        memcpy(out, &d, 8);
        return 0;
    case '?':
        if (!PyBool_Check(v)) goto wrong;
        *out = v == Py_True;
        return 0;
    case 't':
        if (v == Py_None) c = -1;
        else if (PyUnicode_Check(v)) {
            c = code_of(v, codes, vocab);
            if (c < 0) return -1;
        } else goto wrong;
        memcpy(out, &c, 4);
        return 0;
    }
wrong:
    PyErr_Format(PyExc_TypeError, "a field of kind '%c' holds a %s", kind, Py_TYPE(v)->tp_name);
    return -1;
}

static PyObject *transpose(PyObject *self, PyObject *args) {
    PyObject *rows;
    const char *kinds;
    Py_ssize_t nk;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!s#", &PyList_Type, &rows, &kinds, &nk)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *columns = PyList_New(nk), *vocab = PyList_New(0), *codes = PyDict_New();
    char **at = PyMem_Calloc(nk ? (size_t)nk : 1, sizeof(char *));
    if (!columns || !vocab || !codes || !at) goto fail;
    for (Py_ssize_t k = 0; k < nk; k++) {
        Py_ssize_t w = width(kinds[k]);
        if (!w) {
            PyErr_Format(PyExc_ValueError, "unknown column kind '%c'", kinds[k]);
            goto fail;
        }
        PyObject *buffer = PyByteArray_FromStringAndSize(NULL, n * w);
        if (!buffer) goto fail;
        PyList_SET_ITEM(columns, k, buffer);
        at[k] = PyByteArray_AS_STRING(buffer);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != nk) {
            PyErr_Format(PyExc_TypeError, "row %zd is not a tuple of %zd fields", i, nk);
            goto fail;
        }
        for (Py_ssize_t k = 0; k < nk; k++) {
            Py_ssize_t w = width(kinds[k]);
            if (put(kinds[k], PyTuple_GET_ITEM(row, k), at[k] + i * w, codes, vocab) < 0) goto fail;
        }
    }
    PyMem_Free(at);
    Py_DECREF(codes);
    return Py_BuildValue("(NN)", columns, vocab);
fail:
    PyMem_Free(at);
    Py_XDECREF(columns);
    Py_XDECREF(vocab);
    Py_XDECREF(codes);
    return NULL;
}

static PyMethodDef methods[] = {
    {"transpose", transpose, METH_VARARGS,
     "transpose(rows, kinds) -> (columns, vocab)\n\n"
     "rows: a list of tuples, one field per letter of `kinds`: 'q' int64, 'l' int64 or None (-1), 'd' float64\n"
     "or None (NaN), '?' bool, 't' str or None (an int32 code into vocab, -1 for None). columns: a bytearray\n"
     "per field holding its values; vocab: the texts in the order they first appear."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_columns", .m_doc = "The transpose of CallColumns.from_rows, in C.",
    .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__columns(void) { return PyModule_Create(&module); }
