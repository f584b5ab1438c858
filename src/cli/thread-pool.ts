/**
 * Sized before anything touches libuv's thread pool (this module is the
 * first import of the CLI): file writes, fsyncs and renames of concurrent
 * uploads run there, and the default of 4 threads queues them behind each
 * other. fsyncs issued together are also merged by the file system's journal.
 */
process.env.UV_THREADPOOL_SIZE ??= '16';
