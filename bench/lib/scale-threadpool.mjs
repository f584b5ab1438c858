// Imported first by bench/scale.mjs: the loader keeps many blob writes (each
// an fsync of the file and of its directory) in flight, and libuv's thread
// pool, 4 threads by default, would run only 4 of them at a time. It is sized
// when first used, so this must run before any file-system call.
process.env.UV_THREADPOOL_SIZE ??= '32';
