"""
The modules of the benchmark suite that ``benchmarks/run.py`` drives.

- L{scenarios}: what is measured, in which unit, and which way is better;
- L{lineup}: the subjects of one run (a reactor kind and the source tree it imports);
- L{source_trees}: another commit's packages extracted for ``--compare``;
- L{processes}: a server process, its CPU time and memory from ``/proc``;
- L{window}: the measuring window of a network scenario;
- L{load_client}: the network load client (raw non-blocking sockets and ``select.epoll``);
- L{inproc_runner}: the in-process scenarios, one child process each;
- L{one_round}: one round: each scenario on every subject in turn;
- L{records}: the named records of a measurement and of a summary;
- L{summary}: medians and ratios over the rounds;
- L{report}: the printed table and the README's markdown table;
- L{machine}: what was measured on (CPU, versions, commit).
"""
