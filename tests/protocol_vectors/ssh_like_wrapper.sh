#!/bin/sh
# A local stand-in for `ssh gpu-box`, used by the tests and described in docs/protocol.md.
#
# It adds the indirections ssh adds: the command arrives as ONE string that a shell re-parses
# (ssh joins its arguments with spaces), and the engine's stdin and stdout are relayed by other
# processes (as sshd relays them over the network) instead of being inherited, so a client that
# works through this wrapper relies on nothing but the byte streams.
#
#   usage: ssh_like_wrapper.sh ENGINE-COMMAND [ARG...]
exec sh -c "cat | $* | cat"
