# Loads the library given as argv[1] with ctypes, keeps a block in its static data and
# drops another (ctypes_keep.c).
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1])
lib.keep_one()
lib.leak_one()
print("ok")
