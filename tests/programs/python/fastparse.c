/* A C extension that leaks: parse_record() normalizes its field into a malloc'd copy and
 * forgets it. Built by the Python tests against the interpreter under test. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static char *normalize_field(const char *s, Py_ssize_t n) {
    char *out = malloc((size_t)n + 1); /* MARK: normalize-malloc */
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[n] = 0;
    return out;
}

static PyObject *parse_record(PyObject *self, PyObject *arg) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s)
        return NULL;
    char *norm = normalize_field(s, n); /* MARK: parse-calls */
    return PyLong_FromSize_t(strlen(norm)); /* norm is never freed */
}

/* Zero the stack below the caller, so that no dead frame keeps a stale pointer to the
 * last leaked copy (as Valgrind's own leak tests do before checking). */
static PyObject *scrub(PyObject *self, PyObject *unused) {
    volatile char area[32768];
    memset((char *)area, 0, sizeof area);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse_record", parse_record, METH_O, "length of the normalized record"},
    {"scrub", scrub, METH_NOARGS, "zero dead stack"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "fastparse", NULL, -1, methods};

PyMODINIT_FUNC PyInit_fastparse(void) { return PyModule_Create(&module); }
