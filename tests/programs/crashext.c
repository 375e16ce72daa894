/* A CPython extension module with native crash sites, for tests/programs/native_crash.py.
 * Built by the tests (tests/native_builds.py) against each interpreter's own headers, as
 * crashext.so; Python 2.7 and 3.6+. */
#include <Python.h>
#include <stdlib.h>

/* Writes through a pointer the compiler cannot see is NULL. */
__attribute__((noinline)) static void crash_here(int *volatile where) {
    *where = 42;
}

static PyObject *crashext_segv(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    crash_here(NULL);
    Py_RETURN_NONE;
}

/* Sets an exception, then aborts before returning: a C extension dying with an error set. */
static PyObject *crashext_abort_with_error(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    PyErr_SetString(PyExc_RuntimeError, "crashext gave up");
    abort();
}

static PyMethodDef methods[] = {
    {"segv", crashext_segv, METH_NOARGS, "Fault in crash_here()."},
    {"abort_with_error", crashext_abort_with_error, METH_NOARGS, "abort() with an error set."},
    {NULL, NULL, 0, NULL},
};

#if PY_MAJOR_VERSION >= 3
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "crashext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_crashext(void) { return PyModule_Create(&module); }
#else
PyMODINIT_FUNC initcrashext(void) { Py_InitModule("crashext", methods); }
#endif
