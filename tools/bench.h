/*
 * tools/bench.h: the benchmark subcommands of cairn-tool (tools/bench_*.c). Each takes the
 * arguments after its words ("bench write ...") and returns the process exit status.
 */
#ifndef CAIRN_TOOLS_BENCH_H
#define CAIRN_TOOLS_BENCH_H

int bench_write_main(int argc, char **argv);
int bench_labels_main(int argc, char **argv);
int bench_reopen_main(int argc, char **argv);
int bench_query_data_main(int argc, char **argv);
int bench_query_main(int argc, char **argv);

#endif /* CAIRN_TOOLS_BENCH_H */
