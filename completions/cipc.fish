# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cipc_global_optspecs
    string join \n h/help V/version
end

function __fish_cipc_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cipc_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cipc_using_subcommand
    set -l cmd (__fish_cipc_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cipc -n "__fish_cipc_needs_command" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_needs_command" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "serve" -d 'Run the broker (REST API, dashboard, MCP endpoint)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "bench" -d 'Measure a broker: command round trips, channel throughput, idle waiters'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "peers" -d 'List, register and manage peers (sessions with a role)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "send" -d 'Send a command to a role, a peer, or "*" (every online peer)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "wait" -d 'Wait for the next command for this peer (--peer / CIPC_PEER) and print it'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "ack" -d 'Report a command done (with a result) or failed (with --error)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "result" -d 'Wait for a command\'s result and print it (exit 1 if it failed)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "cancel" -d 'Cancel a pending or delivered command'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "commands" -d 'List commands, newest first (--overdue: those past their deadline)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "ask" -d 'Ask a person (or any peer) a question, wait for the answer and print it'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "answer" -d 'Answer an open question (with one of its choices, if it has them)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "questions" -d 'List questions (open ones first); show, wait for or cancel one'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "chan" -d 'Channels: named append-only message streams'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "signal" -d 'Signals: named latches that release waiters when emitted'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "lease" -d 'Leases: say which paths of a repository this session works on; see and check who holds what'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "guard" -d 'A git pre-commit hook that refuses a commit of paths another session leases'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "status" -d 'Peers, commands, channels and signals at a glance'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "reset" -d 'Clear every peer, command, channel and signal'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "work" -d 'Serve a role with any program: take orders, run CMD for each, ack with its output'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "doctor" -d 'Check the broker URL, token, peer and key, and say what to fix'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "claude" -d 'Make Claude Code sessions peers: MCP tools plus hooks that reach them even when idle'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "codex" -d 'Make Codex sessions peers: MCP tools plus hooks, the same as for Claude Code'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "hook" -d 'Run by Claude Code or Codex at each hook `cipc claude setup` or `cipc codex setup` installed (reads the hook\'s JSON on stdin)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "man" -d 'Print the man page (or write every page into a directory)'
complete -c cipc -n "__fish_cipc_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l host -d 'Address to listen on. Anything but loopback needs a token (or --insecure-no-auth)' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -s p -l port -d 'Port to listen on (0 picks a free one and prints it)' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l data-dir -d 'Where the SQLite file lives [env: CIPC_DATA_DIR; ignored, with a warning, under --memory] [default: $XDG_STATE_HOME/cipc or ~/.local/state/cipc]' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l store -d 'Keep the state in PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DB, with ?sslmode=require for TLS, verified; sslrootcert=FILE adds CAs): every node started with the same URL is the same broker' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l turn-timeout -d 'With --store: a node that holds the write turn and says nothing to PostgreSQL this long (frozen, cut off) loses it; other nodes refuse writes (503 write_turn_stalled) after waiting half as long' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l token -d 'Require this token from every client (prefer CIPC_TOKEN or --token-file: flags show in `ps`). At least 8 characters; under 16 draws a warning (--generate-token makes a good one)' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l token-file -d 'Read the token from a file that is not world-readable (`chmod 600`; `--generate-token --out PATH` makes one)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l out -d 'With --generate-token: write the token to this file, mode 600, ready for --token-file (an existing file is kept unless --force)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l allowed-host -d 'Also accept this Host name (reverse proxies, DNS names); repeatable' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l max-body -d 'Largest request body in bytes' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l channel-retention -d 'Messages kept per channel; older ones are trimmed' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l command-retention -d 'Finished commands kept with their results; the oldest are forgotten' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l max-waiters -d 'Open long-polls and streams allowed in all (429 past it)' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l stale-after -d 'A silent peer turns stale after this long' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l offline-after -d 'A silent peer goes offline (its unacked commands are requeued) after this long' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l forget-after -d 'An offline peer is forgotten (with its key) after this long' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l max-peers -d 'Peers kept at most; past it the longest-offline one is forgotten, and when none is offline a new connect gets 429' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l max-leases -d 'Held leases at most (every repo together); past it a new lease gets 429 until some are released or expire' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l max-mcp-sessions -d 'Live MCP sessions at once; past it the longest-idle one with nothing in flight ends, and when every one is busy a new one gets 429' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l max-channels -d 'Channels kept at most; past it the longest-idle one nobody follows is forgotten with its messages, and when all are followed a send gets 429' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l max-signals -d 'Signals kept at most; past it the longest-idle one nobody waits for is forgotten, and when all are waited for an emit gets 429' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l max-connections -d 'Open connections at most; past it a new one is answered 503 and closed (lowered, with a warning, to what the open-file limit allows)' -r
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l memory -d 'Keep everything in memory; nothing survives a restart'
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l generate-token -d 'Print a new random token and exit (with --out, write it to a file only you can read)'
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l force -d 'With --out: replace the file if it exists'
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l insecure-no-auth -d 'Serve a non-loopback address without a token (trusted lab networks only)'
complete -c cipc -n "__fish_cipc_using_subcommand serve" -l check-store -d 'Run SQLite\'s integrity check before starting (reads the whole file)'
complete -c cipc -n "__fish_cipc_using_subcommand serve" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand serve" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l url -d 'Measure this running broker instead of starting one (idle-waiter memory is then not measured). Give it twice for two nodes of one broker (`--store postgres://...`): senders use the first, workers the second' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l store -d 'Compare engines: round trips and channel sends on a broker of its own on SQLite, then on PostgreSQL at this URL with one node and with two (use an empty database: the benchmark leaves its data there)' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l only -d 'Only these measurements (default: all of them)' -r -f -a "round-trip\t'`send?wait` + `ack?next`, beside two `GET /healthz` (and Redis RPUSH/BLPOP on a durable broker)'
sends\t'Channel sends from `--clients` clients, beside `GET /healthz` at the same concurrency (and Redis XADD on a durable broker)'
waiters\t'Idle long-polls: the broker\'s memory for each'
cli\t'`cipc` processes against curl'"
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l repeat -d 'Runs of each measurement beside its floor; results are ranges' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l round-trips -d 'Command round trips to time' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l messages -d 'Channel messages to send in all' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l clients -d 'Concurrent channel senders' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l waiters -d 'Idle long-poll waiters to hold open (0 skips)' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l spawns -d 'Process spawns per CLI-vs-curl comparison (0 skips)' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l startup -d 'Instead of the rest: start-up time and memory of a durable broker whose file holds each of these many messages (e.g. 10000,100000,1000000)' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l sweep -d 'Instead of the rest: one liveness sweep with each of these many peers (e.g. 10000,50000), each with 10,000 commands held' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l trickle -d 'Instead of the rest: memory while this many token-less clients trickle a login body, and after they leave (e.g. 1000)' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l edit-hook -d 'Instead of the rest: what Claude Code\'s edit check (the `pre-tool-use` hook of Edit and Write) adds to one edit, over this many runs each, beside a bare process start (e.g. 200)' -r
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l memory -d 'Start the broker with `--memory` (default: durable, in a temporary dir)'
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l durable -d 'Durable (the default); with `--memory`, both brokers, one after the other'
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l no-redis -d 'Do not start `redis-server` for the durable floors, even if installed'
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l smoke -d 'The CI-light run: every row briefly on a memory and a durable broker, exit 1 if a ratio to its floor is more than twice its bound, or a durable round trip costs more than 2.5 commits'
complete -c cipc -n "__fish_cipc_using_subcommand bench" -l json -d 'Print the results as JSON instead of a table'
complete -c cipc -n "__fish_cipc_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cipc -n "__fish_cipc_using_subcommand bench" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "list" -d 'List every known peer with its status (the default)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "discover" -d 'List online peers and the roles they hold'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "connect" -d 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "show" -d 'Show one peer (default: --peer / CIPC_PEER)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "disconnect" -d 'Disconnect a peer: it goes offline and its unacked commands are pending again'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "forget" -d 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "prune" -d 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "heartbeat" -d 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "attention" -d 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and not __fish_seen_subcommand_from list discover connect show disconnect forget prune heartbeat attention help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from discover" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l cap -d 'A capability tag; repeatable, or comma-separated' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l name -d 'A human-friendly name' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l id -d 'Reconnect as this known peer id instead of getting a new one' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l new -d 'Register a new peer even when CIPC_PEER names one of this role'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l export -d 'Print only `export CIPC_PEER=<id> CIPC_PEER_KEY=<key>`, for eval "$(cipc peers connect ROLE --export)". The key proves this peer; keep it out of logs'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from connect" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from disconnect" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from forget" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l older-than -d 'Only peers last seen at least this long ago (e.g. 1h, 2days)' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l dry-run -d 'List what would be forgotten, and forget nothing'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from prune" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from heartbeat" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from attention" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "list" -d 'List every known peer with its status (the default)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "discover" -d 'List online peers and the roles they hold'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "connect" -d 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one peer (default: --peer / CIPC_PEER)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "disconnect" -d 'Disconnect a peer: it goes offline and its unacked commands are pending again'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "forget" -d 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "heartbeat" -d 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "attention" -d 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER'
complete -c cipc -n "__fish_cipc_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand send" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand send" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -s p -l param -d 'One parameter: key=value (a string) or key:=JSON (a number, object, ...); repeatable' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l params -d 'All parameters as JSON: inline, @file, or - for stdin (--param adds to it)' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l from -d 'Who is sending [default: this peer\'s role, else "anonymous"]' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l dedupe-key -d 'An idempotency key: sending it again answers the original command' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l ttl -d 'Let the command expire if nobody takes it within this long (e.g. 10m)' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l deadline -d 'It should be finished within this long (e.g. 10m): past it, an unfinished command is marked overdue, shown to the people watching and listed by `cipc commands --overdue`. It keeps running' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l timeout -d 'With --wait: give up after this long (exit 124) [default: 5m]' -r
complete -c cipc -n "__fish_cipc_using_subcommand send" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand send" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand send" -l require-online -d 'Refuse to send (exit 1) unless an online peer holds the target (has that role, or is that peer) right now; without it a command for an absent role is queued until one connects'
complete -c cipc -n "__fish_cipc_using_subcommand send" -l wait -d 'Block until the command is acked and print its result alone, into a pipe too (--json: the whole command; exit 1 if it failed)'
complete -c cipc -n "__fish_cipc_using_subcommand send" -l forever -d 'With --wait: wait as long as it takes'
complete -c cipc -n "__fish_cipc_using_subcommand send" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand send" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l timeout -d 'Give up after this long (exit 124)' -r
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand wait" -l forever -d 'Wait as long as it takes'
complete -c cipc -n "__fish_cipc_using_subcommand wait" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand wait" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l result -d 'It succeeded, with this outcome as JSON: inline, @file, or - for stdin' -r
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l error -d 'It failed, with this message (instead of --result: a command either succeeded or failed)' -r
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l attempt -d 'The delivery you are acking (`attempt` in what `cipc wait` printed): if the command was since given to another taker, the ack is refused' -r
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand ack" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand ack" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand ack" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand result" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand result" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand result" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand result" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand result" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand result" -l timeout -d 'Give up after this long (exit 124)' -r
complete -c cipc -n "__fish_cipc_using_subcommand result" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand result" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand result" -l forever -d 'Wait as long as it takes'
complete -c cipc -n "__fish_cipc_using_subcommand result" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand result" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand cancel" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l status -d 'Only commands with this status' -r -f -a "pending\t''
delivered\t''
acked\t''
failed\t''
cancelled\t''
expired\t''"
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l target -d 'Only commands sent to this target (a role, a peer id, or "*")' -r
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l limit -d 'At most this many, newest first (broker default 100)' -r
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand commands" -l overdue -d 'Only commands whose deadline (`send --deadline`) passed before they finished: still running late, or finished late'
complete -c cipc -n "__fish_cipc_using_subcommand commands" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand commands" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -s c -l choice -d 'One answer the person may pick; repeatable, in order [default: any text]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l context -d 'What helps to answer it (a diff summary, a command id): JSON inline, @file, or - for stdin' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l timeout -d 'Stop waiting after this long (exit 124; the question stays open) [default: 30m]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l ttl -d 'Let the question expire if nobody answers it within this long (e.g. 1h)' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l from -d 'Who asks [default: this peer\'s role, else "anonymous"]' -r
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l forever -d 'Wait as long as it takes'
complete -c cipc -n "__fish_cipc_using_subcommand ask" -l no-wait -d 'Ask and return at once, printing the question\'s id (JSON mode: the question); collect the answer later with `cipc questions wait ID`'
complete -c cipc -n "__fish_cipc_using_subcommand ask" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand ask" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l by -d 'Who answers [default: this peer\'s role, else "someone"]' -r
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l note -d 'Words that travel with the answer: for a permission, the reason the session is shown (e.g. cipc answer ID deny --note "use a branch")' -r
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand answer" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand answer" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand answer" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -l status -d 'Only questions with this status (when listing)' -r -f -a "open\t''
answered\t''
cancelled\t''
expired\t''"
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -f -a "list" -d 'List questions, open ones first (oldest first), then the rest (the default)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -f -a "show" -d 'Show one question in full: text, choices, context, answer'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -f -a "wait" -d 'Wait for a question\'s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -f -a "cancel" -d 'Withdraw an open question (its asker\'s wait ends with exit 1)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and not __fish_seen_subcommand_from list show wait cancel help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -l status -d 'Only questions with this status' -r -f -a "open\t''
answered\t''
cancelled\t''
expired\t''"
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l timeout -d 'Stop waiting after this long (exit 124; the question stays open)' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l forever -d 'Wait as long as it takes'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from wait" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from cancel" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from help" -f -a "list" -d 'List questions, open ones first (oldest first), then the rest (the default)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one question in full: text, choices, context, answer'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from help" -f -a "wait" -d 'Wait for a question\'s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Withdraw an open question (its asker\'s wait ends with exit 1)'
complete -c cipc -n "__fish_cipc_using_subcommand questions; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -f -a "send" -d 'Append a message (any JSON) to a channel'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -f -a "read" -d 'Print a channel\'s messages after --since'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -f -a "follow" -d 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -f -a "list" -d 'List channels with their message counts'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and not __fish_seen_subcommand_from send read follow list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from send" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l since -d 'Only messages with a seq greater than this' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l limit -d 'At most this many messages (broker default 1000)' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from read" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -l since -d 'Start after this seq (0: the whole history) [default: only new messages]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from follow" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from help" -f -a "send" -d 'Append a message (any JSON) to a channel'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from help" -f -a "read" -d 'Print a channel\'s messages after --since'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from help" -f -a "follow" -d 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from help" -f -a "list" -d 'List channels with their message counts'
complete -c cipc -n "__fish_cipc_using_subcommand chan; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -f -a "emit" -d 'Emit (set) a signal, releasing its waiters; emitting again replaces the data'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -f -a "wait" -d 'Wait until a signal is emitted and print it (exit 124 on timeout)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -f -a "get" -d 'Print a signal (emitted: false if it never was)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -f -a "clear" -d 'Clear a signal so that waiters block again (its count is kept)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -f -a "list" -d 'List every signal'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and not __fish_seen_subcommand_from emit wait get clear list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -l data -d 'Data carried by the signal: JSON inline, @file, or - for stdin' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from emit" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l timeout -d 'Give up after this long' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l after -d 'Wait for an emission newer than this count (from an earlier `get`/`wait`)' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l forever -d 'Wait as long as it takes'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from wait" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from clear" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from help" -f -a "emit" -d 'Emit (set) a signal, releasing its waiters; emitting again replaces the data'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from help" -f -a "wait" -d 'Wait until a signal is emitted and print it (exit 124 on timeout)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from help" -f -a "get" -d 'Print a signal (emitted: false if it never was)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from help" -f -a "clear" -d 'Clear a signal so that waiters block again (its count is kept)'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from help" -f -a "list" -d 'List every signal'
complete -c cipc -n "__fish_cipc_using_subcommand signal; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -f -a "acquire" -d 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -f -a "release" -d 'Release leases: by id, by path, or (no arguments) all of this peer\'s in this repo'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -f -a "renew" -d 'Hold one of this peer\'s leases longer'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -f -a "list" -d 'List the held leases of this repo (or of every repo)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -f -a "check" -d 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and not __fish_seen_subcommand_from acquire release renew list check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l ttl -d 'How long to hold them unless renewed (1s to 24h) [default: 30m]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l reason -d 'Why, shown to whoever is refused (e.g. "migrating the users table")' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l repo -d 'The repository\'s name (default: derived from this checkout); the paths are then repo-relative as typed' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l shared -d 'A shared lease: others may share the paths, but nobody may hold them exclusively'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from acquire" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -l repo -d 'The repository\'s name (default: derived from this checkout)' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from release" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -l ttl -d 'From now, how long to hold it (1s to 24h) [default: its own ttl again]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from renew" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l repo -d 'The repository\'s name (default: derived from this checkout)' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l all -d 'Every repo\'s leases, not only this checkout\'s'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l mine -d 'Only this peer\'s leases'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -l repo -d 'The repository\'s name (default: derived from this checkout); the paths are then repo-relative as typed' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from help" -f -a "acquire" -d 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from help" -f -a "release" -d 'Release leases: by id, by path, or (no arguments) all of this peer\'s in this repo'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from help" -f -a "renew" -d 'Hold one of this peer\'s leases longer'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the held leases of this repo (or of every repo)'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from help" -f -a "check" -d 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free'
complete -c cipc -n "__fish_cipc_using_subcommand lease; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and not __fish_seen_subcommand_from install remove check help" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and not __fish_seen_subcommand_from install remove check help" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and not __fish_seen_subcommand_from install remove check help" -f -a "install" -d 'Add the lease check to the repository\'s pre-commit hook (merged with one that exists)'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and not __fish_seen_subcommand_from install remove check help" -f -a "remove" -d 'Take out exactly what `install` added, restoring the hook as it was'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and not __fish_seen_subcommand_from install remove check help" -f -a "check" -d 'Check the staged paths against other sessions\' leases (what the hook runs)'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and not __fish_seen_subcommand_from install remove check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from install" -l dir -d 'A directory of the repository [default: the current one]' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from install" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from remove" -l dir -d 'A directory of the repository [default: the current one]' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -l repo -d 'The repository\'s name [default: derived from this checkout]' -r
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "install" -d 'Add the lease check to the repository\'s pre-commit hook (merged with one that exists)'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Take out exactly what `install` added, restoring the hook as it was'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check the staged paths against other sessions\' leases (what the hook runs)'
complete -c cipc -n "__fish_cipc_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand status" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand status" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand status" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand status" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand status" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand status" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand status" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand status" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand status" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand reset" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand reset" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand reset" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand reset" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand reset" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand reset" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand reset" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand reset" -s y -l yes -d 'Do not ask for confirmation (required when stdin is not a terminal). Answering no to the question changes nothing and exits 0'
complete -c cipc -n "__fish_cipc_using_subcommand reset" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand reset" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand work" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand work" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand work" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand work" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand work" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand work" -l concurrency -d 'Run up to N handlers at once' -r
complete -c cipc -n "__fish_cipc_using_subcommand work" -l timeout -d 'Kill a handler that runs longer than this (SIGKILL) and fail its command' -r
complete -c cipc -n "__fish_cipc_using_subcommand work" -l name -d 'A human-friendly name for the peer (default: "cipc work CMD")' -r
complete -c cipc -n "__fish_cipc_using_subcommand work" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand work" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand work" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand work" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and not __fish_seen_subcommand_from setup remove help" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and not __fish_seen_subcommand_from setup remove help" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and not __fish_seen_subcommand_from setup remove help" -f -a "setup" -d 'Configure Claude Code so its sessions are peers of ROLE from their first moment'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and not __fish_seen_subcommand_from setup remove help" -f -a "remove" -d 'Take out exactly what `setup` added (the MCP server and the hooks)'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and not __fish_seen_subcommand_from setup remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l role -d 'The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -)' -r
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l name -d 'A name for the sessions\' peers (default: the project directory and session)' -r
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l dir -d 'The project directory (default: the current one)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l url -d 'The broker\'s URL' -r
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l token -d 'The broker has a token (given here or in CIPC_TOKEN): the MCP server entry sends it' -r
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l token-file -d 'Read the token from this file; the hooks read it from there too' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l cipc -d 'The cipc program the hooks run (default: `cipc`, found on PATH, in a project\'s shared files; this executable\'s absolute path in your own configuration)' -r
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l scope -d 'Which configuration to write' -r -f -a "project\t'This project, shared with the team: .mcp.json and .claude/settings.json'
local\t'This project, only for you: ~/.claude.json and .claude/settings.local.json'
user\t'Every project of yours: ~/.claude.json and ~/.claude/settings.json'"
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l transport -d 'The MCP transport' -r -f -a "http\t'Streamable HTTP at /mcp (recommended)'
sse\t'The older HTTP+SSE transport at /mcp/sse'"
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l permission-wait -d 'How long a permission prompt relayed to the dashboard waits for the person (e.g. 10m, 1h); the terminal\'s own dialog shows beside it all along and whichever answers first wins. 0 relays nothing' -r
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l claim-on-edit -d 'Also lease each file a session edits (30 minutes, renewed while it keeps editing, released when it ends), so other sessions are refused it. Off by default: edits of files another session leased are refused either way'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -l dry-run -d 'Print what would change and write nothing'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from setup" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from remove" -l scope -d 'Which configuration to clean' -r -f -a "project\t'This project, shared with the team: .mcp.json and .claude/settings.json'
local\t'This project, only for you: ~/.claude.json and .claude/settings.local.json'
user\t'Every project of yours: ~/.claude.json and ~/.claude/settings.json'"
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from remove" -l dir -d 'The project directory (default: the current one)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from remove" -l dry-run -d 'Print what would change and write nothing'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from help" -f -a "setup" -d 'Configure Claude Code so its sessions are peers of ROLE from their first moment'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Take out exactly what `setup` added (the MCP server and the hooks)'
complete -c cipc -n "__fish_cipc_using_subcommand claude; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and not __fish_seen_subcommand_from setup remove help" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and not __fish_seen_subcommand_from setup remove help" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and not __fish_seen_subcommand_from setup remove help" -f -a "setup" -d 'Configure Codex so its sessions are peers of ROLE from their first moment'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and not __fish_seen_subcommand_from setup remove help" -f -a "remove" -d 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and not __fish_seen_subcommand_from setup remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l role -d 'The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -)' -r
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l name -d 'A name for the sessions\' peers (default: the project directory and session)' -r
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l dir -d 'The project directory (default: the current one)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l url -d 'The broker\'s URL' -r
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l token -d 'The broker has a token (given here or in CIPC_TOKEN): the MCP server entry sends it' -r
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l token-file -d 'Read the token from this file; the hooks read it from there too' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l cipc -d 'The cipc program the hooks run (default: `cipc`, found on PATH, in a project\'s shared files; this executable\'s absolute path in your own configuration)' -r
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l scope -d 'Which configuration to write' -r -f -a "project\t'This project: .codex/config.toml and .codex/hooks.json (Codex reads them once you trust the project)'
user\t'Every project of yours: $CODEX_HOME/config.toml and $CODEX_HOME/hooks.json (~/.codex by default)'"
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l permission-wait -d 'How long a permission prompt relayed to the dashboard waits for the person (e.g. 30s, 10m) before Codex asks in its own way; Codex runs the hook first, so this holds its own prompt back. 0 relays nothing' -r
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l claim-on-edit -d 'Also lease each file a session edits (30 minutes, renewed while it keeps editing, released when it ends), so other sessions are refused it. Off by default: edits of files another session leased are refused either way'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -l dry-run -d 'Print what would change and write nothing'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from setup" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from remove" -l scope -d 'Which configuration to clean' -r -f -a "project\t'This project: .codex/config.toml and .codex/hooks.json (Codex reads them once you trust the project)'
user\t'Every project of yours: $CODEX_HOME/config.toml and $CODEX_HOME/hooks.json (~/.codex by default)'"
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from remove" -l dir -d 'The project directory (default: the current one)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from remove" -l dry-run -d 'Print what would change and write nothing'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from help" -f -a "setup" -d 'Configure Codex so its sessions are peers of ROLE from their first moment'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)'
complete -c cipc -n "__fish_cipc_using_subcommand codex; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l agent -d 'Which agent runs the hook' -r -f -a "claude-code\t''
codex\t''"
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l role -d 'The role this session takes' -r
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l name -d 'A name for the session\'s peer (default: the project directory\'s name)' -r
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l permission-wait -d 'How long a relayed permission prompt waits for an answer from the dashboard or `cipc answer` (the `permission` hook; seconds)' -r
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l url -d 'The broker\'s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]' -r
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l token -d 'The broker\'s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]' -r
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l token-file -d 'Read the token from a file that is not world-readable (wins over --token)' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l peer -d 'This session\'s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]' -r
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l peer-key -d 'This session\'s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]' -r
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l claim-on-edit -d 'Lease each file the session edits (the `pre-tool-use` hook of the editing tools), renewed while it keeps editing, released when the session ends'
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l json -d 'Print one JSON document per result (the default when stdout is not a terminal)'
complete -c cipc -n "__fish_cipc_using_subcommand hook" -l table -d 'Print tables and short lines even when stdout is not a terminal'
complete -c cipc -n "__fish_cipc_using_subcommand hook" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand hook" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cipc -n "__fish_cipc_using_subcommand completions" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand man" -l dir -d 'Write cipc.1 and one page per subcommand (cipc-peers.1, ...) into DIR instead of printing cipc.1' -r -F
complete -c cipc -n "__fish_cipc_using_subcommand man" -s h -l help -d 'Print help'
complete -c cipc -n "__fish_cipc_using_subcommand man" -s V -l version -d 'Print version'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "serve" -d 'Run the broker (REST API, dashboard, MCP endpoint)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "bench" -d 'Measure a broker: command round trips, channel throughput, idle waiters'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "peers" -d 'List, register and manage peers (sessions with a role)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "send" -d 'Send a command to a role, a peer, or "*" (every online peer)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "wait" -d 'Wait for the next command for this peer (--peer / CIPC_PEER) and print it'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "ack" -d 'Report a command done (with a result) or failed (with --error)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "result" -d 'Wait for a command\'s result and print it (exit 1 if it failed)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "cancel" -d 'Cancel a pending or delivered command'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "commands" -d 'List commands, newest first (--overdue: those past their deadline)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "ask" -d 'Ask a person (or any peer) a question, wait for the answer and print it'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "answer" -d 'Answer an open question (with one of its choices, if it has them)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "questions" -d 'List questions (open ones first); show, wait for or cancel one'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "chan" -d 'Channels: named append-only message streams'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "signal" -d 'Signals: named latches that release waiters when emitted'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "lease" -d 'Leases: say which paths of a repository this session works on; see and check who holds what'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "guard" -d 'A git pre-commit hook that refuses a commit of paths another session leases'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "status" -d 'Peers, commands, channels and signals at a glance'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "reset" -d 'Clear every peer, command, channel and signal'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "work" -d 'Serve a role with any program: take orders, run CMD for each, ack with its output'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "doctor" -d 'Check the broker URL, token, peer and key, and say what to fix'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "claude" -d 'Make Claude Code sessions peers: MCP tools plus hooks that reach them even when idle'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "codex" -d 'Make Codex sessions peers: MCP tools plus hooks, the same as for Claude Code'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "hook" -d 'Run by Claude Code or Codex at each hook `cipc claude setup` or `cipc codex setup` installed (reads the hook\'s JSON on stdin)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "man" -d 'Print the man page (or write every page into a directory)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and not __fish_seen_subcommand_from serve bench peers send wait ack result cancel commands ask answer questions chan signal lease guard status reset work doctor claude codex hook completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "list" -d 'List every known peer with its status (the default)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "discover" -d 'List online peers and the roles they hold'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "connect" -d 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "show" -d 'Show one peer (default: --peer / CIPC_PEER)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "disconnect" -d 'Disconnect a peer: it goes offline and its unacked commands are pending again'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "forget" -d 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "prune" -d 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "heartbeat" -d 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "attention" -d 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from questions" -f -a "list" -d 'List questions, open ones first (oldest first), then the rest (the default)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from questions" -f -a "show" -d 'Show one question in full: text, choices, context, answer'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from questions" -f -a "wait" -d 'Wait for a question\'s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from questions" -f -a "cancel" -d 'Withdraw an open question (its asker\'s wait ends with exit 1)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from chan" -f -a "send" -d 'Append a message (any JSON) to a channel'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from chan" -f -a "read" -d 'Print a channel\'s messages after --since'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from chan" -f -a "follow" -d 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from chan" -f -a "list" -d 'List channels with their message counts'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from signal" -f -a "emit" -d 'Emit (set) a signal, releasing its waiters; emitting again replaces the data'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from signal" -f -a "wait" -d 'Wait until a signal is emitted and print it (exit 124 on timeout)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from signal" -f -a "get" -d 'Print a signal (emitted: false if it never was)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from signal" -f -a "clear" -d 'Clear a signal so that waiters block again (its count is kept)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from signal" -f -a "list" -d 'List every signal'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from lease" -f -a "acquire" -d 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from lease" -f -a "release" -d 'Release leases: by id, by path, or (no arguments) all of this peer\'s in this repo'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from lease" -f -a "renew" -d 'Hold one of this peer\'s leases longer'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from lease" -f -a "list" -d 'List the held leases of this repo (or of every repo)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from lease" -f -a "check" -d 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "install" -d 'Add the lease check to the repository\'s pre-commit hook (merged with one that exists)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "remove" -d 'Take out exactly what `install` added, restoring the hook as it was'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "check" -d 'Check the staged paths against other sessions\' leases (what the hook runs)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from claude" -f -a "setup" -d 'Configure Claude Code so its sessions are peers of ROLE from their first moment'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from claude" -f -a "remove" -d 'Take out exactly what `setup` added (the MCP server and the hooks)'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from codex" -f -a "setup" -d 'Configure Codex so its sessions are peers of ROLE from their first moment'
complete -c cipc -n "__fish_cipc_using_subcommand help; and __fish_seen_subcommand_from codex" -f -a "remove" -d 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)'
