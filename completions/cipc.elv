
use builtin;
use str;

set edit:completion:arg-completer[cipc] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'cipc'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'cipc'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run the broker (REST API, dashboard, MCP endpoint)'
            cand bench 'Measure a broker: command round trips, channel throughput, idle waiters'
            cand peers 'List, register and manage peers (sessions with a role)'
            cand send 'Send a command to a role, a peer, or "*" (every online peer)'
            cand wait 'Wait for the next command for this peer (--peer / CIPC_PEER) and print it'
            cand ack 'Report a command done (with a result) or failed (with --error)'
            cand result 'Wait for a command''s result and print it (exit 1 if it failed)'
            cand cancel 'Cancel a pending or delivered command'
            cand commands 'List commands, newest first (--overdue: those past their deadline)'
            cand ask 'Ask a person (or any peer) a question, wait for the answer and print it'
            cand answer 'Answer an open question (with one of its choices, if it has them)'
            cand questions 'List questions (open ones first); show, wait for or cancel one'
            cand chan 'Channels: named append-only message streams'
            cand signal 'Signals: named latches that release waiters when emitted'
            cand lease 'Leases: say which paths of a repository this session works on; see and check who holds what'
            cand guard 'A git pre-commit hook that refuses a commit of paths another session leases'
            cand status 'Peers, commands, channels and signals at a glance'
            cand reset 'Clear every peer, command, channel and signal'
            cand work 'Serve a role with any program: take orders, run CMD for each, ack with its output'
            cand doctor 'Check the broker URL, token, peer and key, and say what to fix'
            cand claude 'Make Claude Code sessions peers: MCP tools plus hooks that reach them even when idle'
            cand codex 'Make Codex sessions peers: MCP tools plus hooks, the same as for Claude Code'
            cand hook 'Run by Claude Code or Codex at each hook `cipc claude setup` or `cipc codex setup` installed (reads the hook''s JSON on stdin)'
            cand completions 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
            cand man 'Print the man page (or write every page into a directory)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;serve'= {
            cand --host 'Address to listen on. Anything but loopback needs a token (or --insecure-no-auth)'
            cand -p 'Port to listen on (0 picks a free one and prints it)'
            cand --port 'Port to listen on (0 picks a free one and prints it)'
            cand --data-dir 'Where the SQLite file lives [env: CIPC_DATA_DIR; ignored, with a warning, under --memory] [default: $XDG_STATE_HOME/cipc or ~/.local/state/cipc]'
            cand --store 'Keep the state in PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DB, with ?sslmode=require for TLS, verified; sslrootcert=FILE adds CAs): every node started with the same URL is the same broker'
            cand --turn-timeout 'With --store: a node that holds the write turn and says nothing to PostgreSQL this long (frozen, cut off) loses it; other nodes refuse writes (503 write_turn_stalled) after waiting half as long'
            cand --token 'Require this token from every client (prefer CIPC_TOKEN or --token-file: flags show in `ps`). At least 8 characters; under 16 draws a warning (--generate-token makes a good one)'
            cand --token-file 'Read the token from a file that is not world-readable (`chmod 600`; `--generate-token --out PATH` makes one)'
            cand --out 'With --generate-token: write the token to this file, mode 600, ready for --token-file (an existing file is kept unless --force)'
            cand --allowed-host 'Also accept this Host name (reverse proxies, DNS names); repeatable'
            cand --max-body 'Largest request body in bytes'
            cand --channel-retention 'Messages kept per channel; older ones are trimmed'
            cand --command-retention 'Finished commands kept with their results; the oldest are forgotten'
            cand --max-waiters 'Open long-polls and streams allowed in all (429 past it)'
            cand --stale-after 'A silent peer turns stale after this long'
            cand --offline-after 'A silent peer goes offline (its unacked commands are requeued) after this long'
            cand --forget-after 'An offline peer is forgotten (with its key) after this long'
            cand --max-peers 'Peers kept at most; past it the longest-offline one is forgotten, and when none is offline a new connect gets 429'
            cand --max-leases 'Held leases at most (every repo together); past it a new lease gets 429 until some are released or expire'
            cand --max-mcp-sessions 'Live MCP sessions at once; past it the longest-idle one with nothing in flight ends, and when every one is busy a new one gets 429'
            cand --max-channels 'Channels kept at most; past it the longest-idle one nobody follows is forgotten with its messages, and when all are followed a send gets 429'
            cand --max-signals 'Signals kept at most; past it the longest-idle one nobody waits for is forgotten, and when all are waited for an emit gets 429'
            cand --max-connections 'Open connections at most; past it a new one is answered 503 and closed (lowered, with a warning, to what the open-file limit allows)'
            cand --memory 'Keep everything in memory; nothing survives a restart'
            cand --generate-token 'Print a new random token and exit (with --out, write it to a file only you can read)'
            cand --force 'With --out: replace the file if it exists'
            cand --insecure-no-auth 'Serve a non-loopback address without a token (trusted lab networks only)'
            cand --check-store 'Run SQLite''s integrity check before starting (reads the whole file)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;bench'= {
            cand --url 'Measure this running broker instead of starting one (idle-waiter memory is then not measured). Give it twice for two nodes of one broker (`--store postgres://...`): senders use the first, workers the second'
            cand --store 'Compare engines: round trips and channel sends on a broker of its own on SQLite, then on PostgreSQL at this URL with one node and with two (use an empty database: the benchmark leaves its data there)'
            cand --only 'Only these measurements (default: all of them)'
            cand --repeat 'Runs of each measurement beside its floor; results are ranges'
            cand --round-trips 'Command round trips to time'
            cand --messages 'Channel messages to send in all'
            cand --clients 'Concurrent channel senders'
            cand --waiters 'Idle long-poll waiters to hold open (0 skips)'
            cand --spawns 'Process spawns per CLI-vs-curl comparison (0 skips)'
            cand --startup 'Instead of the rest: start-up time and memory of a durable broker whose file holds each of these many messages (e.g. 10000,100000,1000000)'
            cand --sweep 'Instead of the rest: one liveness sweep with each of these many peers (e.g. 10000,50000), each with 10,000 commands held'
            cand --trickle 'Instead of the rest: memory while this many token-less clients trickle a login body, and after they leave (e.g. 1000)'
            cand --edit-hook 'Instead of the rest: what Claude Code''s edit check (the `pre-tool-use` hook of Edit and Write) adds to one edit, over this many runs each, beside a bare process start (e.g. 200)'
            cand --memory 'Start the broker with `--memory` (default: durable, in a temporary dir)'
            cand --durable 'Durable (the default); with `--memory`, both brokers, one after the other'
            cand --no-redis 'Do not start `redis-server` for the durable floors, even if installed'
            cand --smoke 'The CI-light run: every row briefly on a memory and a durable broker, exit 1 if a ratio to its floor is more than twice its bound, or a durable round trip costs more than 2.5 commits'
            cand --json 'Print the results as JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List every known peer with its status (the default)'
            cand discover 'List online peers and the roles they hold'
            cand connect 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one'
            cand show 'Show one peer (default: --peer / CIPC_PEER)'
            cand disconnect 'Disconnect a peer: it goes offline and its unacked commands are pending again'
            cand forget 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again'
            cand prune 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than'
            cand heartbeat 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)'
            cand attention 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;peers;list'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;discover'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;connect'= {
            cand --cap 'A capability tag; repeatable, or comma-separated'
            cand --name 'A human-friendly name'
            cand --id 'Reconnect as this known peer id instead of getting a new one'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --new 'Register a new peer even when CIPC_PEER names one of this role'
            cand --export 'Print only `export CIPC_PEER=<id> CIPC_PEER_KEY=<key>`, for eval "$(cipc peers connect ROLE --export)". The key proves this peer; keep it out of logs'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;show'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;disconnect'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;forget'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;prune'= {
            cand --older-than 'Only peers last seen at least this long ago (e.g. 1h, 2days)'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --dry-run 'List what would be forgotten, and forget nothing'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;heartbeat'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;attention'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;peers;help'= {
            cand list 'List every known peer with its status (the default)'
            cand discover 'List online peers and the roles they hold'
            cand connect 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one'
            cand show 'Show one peer (default: --peer / CIPC_PEER)'
            cand disconnect 'Disconnect a peer: it goes offline and its unacked commands are pending again'
            cand forget 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again'
            cand prune 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than'
            cand heartbeat 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)'
            cand attention 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;peers;help;list'= {
        }
        &'cipc;peers;help;discover'= {
        }
        &'cipc;peers;help;connect'= {
        }
        &'cipc;peers;help;show'= {
        }
        &'cipc;peers;help;disconnect'= {
        }
        &'cipc;peers;help;forget'= {
        }
        &'cipc;peers;help;prune'= {
        }
        &'cipc;peers;help;heartbeat'= {
        }
        &'cipc;peers;help;attention'= {
        }
        &'cipc;peers;help;help'= {
        }
        &'cipc;send'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand -p 'One parameter: key=value (a string) or key:=JSON (a number, object, ...); repeatable'
            cand --param 'One parameter: key=value (a string) or key:=JSON (a number, object, ...); repeatable'
            cand --params 'All parameters as JSON: inline, @file, or - for stdin (--param adds to it)'
            cand --from 'Who is sending [default: this peer''s role, else "anonymous"]'
            cand --dedupe-key 'An idempotency key: sending it again answers the original command'
            cand --ttl 'Let the command expire if nobody takes it within this long (e.g. 10m)'
            cand --deadline 'It should be finished within this long (e.g. 10m): past it, an unfinished command is marked overdue, shown to the people watching and listed by `cipc commands --overdue`. It keeps running'
            cand --timeout 'With --wait: give up after this long (exit 124) [default: 5m]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand --require-online 'Refuse to send (exit 1) unless an online peer holds the target (has that role, or is that peer) right now; without it a command for an absent role is queued until one connects'
            cand --wait 'Block until the command is acked and print its result alone, into a pipe too (--json: the whole command; exit 1 if it failed)'
            cand --forever 'With --wait: wait as long as it takes'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;wait'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --timeout 'Give up after this long (exit 124)'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand --forever 'Wait as long as it takes'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;ack'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --result 'It succeeded, with this outcome as JSON: inline, @file, or - for stdin'
            cand --error 'It failed, with this message (instead of --result: a command either succeeded or failed)'
            cand --attempt 'The delivery you are acking (`attempt` in what `cipc wait` printed): if the command was since given to another taker, the ack is refused'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;result'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --timeout 'Give up after this long (exit 124)'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand --forever 'Wait as long as it takes'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;cancel'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;commands'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --status 'Only commands with this status'
            cand --target 'Only commands sent to this target (a role, a peer id, or "*")'
            cand --limit 'At most this many, newest first (broker default 100)'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand --overdue 'Only commands whose deadline (`send --deadline`) passed before they finished: still running late, or finished late'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;ask'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand -c 'One answer the person may pick; repeatable, in order [default: any text]'
            cand --choice 'One answer the person may pick; repeatable, in order [default: any text]'
            cand --context 'What helps to answer it (a diff summary, a command id): JSON inline, @file, or - for stdin'
            cand --timeout 'Stop waiting after this long (exit 124; the question stays open) [default: 30m]'
            cand --ttl 'Let the question expire if nobody answers it within this long (e.g. 1h)'
            cand --from 'Who asks [default: this peer''s role, else "anonymous"]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand --forever 'Wait as long as it takes'
            cand --no-wait 'Ask and return at once, printing the question''s id (JSON mode: the question); collect the answer later with `cipc questions wait ID`'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;answer'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --by 'Who answers [default: this peer''s role, else "someone"]'
            cand --note 'Words that travel with the answer: for a permission, the reason the session is shown (e.g. cipc answer ID deny --note "use a branch")'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;questions'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --status 'Only questions with this status (when listing)'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List questions, open ones first (oldest first), then the rest (the default)'
            cand show 'Show one question in full: text, choices, context, answer'
            cand wait 'Wait for a question''s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)'
            cand cancel 'Withdraw an open question (its asker''s wait ends with exit 1)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;questions;list'= {
            cand --status 'Only questions with this status'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;questions;show'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;questions;wait'= {
            cand --timeout 'Stop waiting after this long (exit 124; the question stays open)'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --forever 'Wait as long as it takes'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;questions;cancel'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;questions;help'= {
            cand list 'List questions, open ones first (oldest first), then the rest (the default)'
            cand show 'Show one question in full: text, choices, context, answer'
            cand wait 'Wait for a question''s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)'
            cand cancel 'Withdraw an open question (its asker''s wait ends with exit 1)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;questions;help;list'= {
        }
        &'cipc;questions;help;show'= {
        }
        &'cipc;questions;help;wait'= {
        }
        &'cipc;questions;help;cancel'= {
        }
        &'cipc;questions;help;help'= {
        }
        &'cipc;chan'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand send 'Append a message (any JSON) to a channel'
            cand read 'Print a channel''s messages after --since'
            cand follow 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)'
            cand list 'List channels with their message counts'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;chan;send'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;chan;read'= {
            cand --since 'Only messages with a seq greater than this'
            cand --limit 'At most this many messages (broker default 1000)'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;chan;follow'= {
            cand --since 'Start after this seq (0: the whole history) [default: only new messages]'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;chan;list'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;chan;help'= {
            cand send 'Append a message (any JSON) to a channel'
            cand read 'Print a channel''s messages after --since'
            cand follow 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)'
            cand list 'List channels with their message counts'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;chan;help;send'= {
        }
        &'cipc;chan;help;read'= {
        }
        &'cipc;chan;help;follow'= {
        }
        &'cipc;chan;help;list'= {
        }
        &'cipc;chan;help;help'= {
        }
        &'cipc;signal'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand emit 'Emit (set) a signal, releasing its waiters; emitting again replaces the data'
            cand wait 'Wait until a signal is emitted and print it (exit 124 on timeout)'
            cand get 'Print a signal (emitted: false if it never was)'
            cand clear 'Clear a signal so that waiters block again (its count is kept)'
            cand list 'List every signal'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;signal;emit'= {
            cand --data 'Data carried by the signal: JSON inline, @file, or - for stdin'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;signal;wait'= {
            cand --timeout 'Give up after this long'
            cand --after 'Wait for an emission newer than this count (from an earlier `get`/`wait`)'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --forever 'Wait as long as it takes'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;signal;get'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;signal;clear'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;signal;list'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;signal;help'= {
            cand emit 'Emit (set) a signal, releasing its waiters; emitting again replaces the data'
            cand wait 'Wait until a signal is emitted and print it (exit 124 on timeout)'
            cand get 'Print a signal (emitted: false if it never was)'
            cand clear 'Clear a signal so that waiters block again (its count is kept)'
            cand list 'List every signal'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;signal;help;emit'= {
        }
        &'cipc;signal;help;wait'= {
        }
        &'cipc;signal;help;get'= {
        }
        &'cipc;signal;help;clear'= {
        }
        &'cipc;signal;help;list'= {
        }
        &'cipc;signal;help;help'= {
        }
        &'cipc;lease'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand acquire 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder'
            cand release 'Release leases: by id, by path, or (no arguments) all of this peer''s in this repo'
            cand renew 'Hold one of this peer''s leases longer'
            cand list 'List the held leases of this repo (or of every repo)'
            cand check 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;lease;acquire'= {
            cand --ttl 'How long to hold them unless renewed (1s to 24h) [default: 30m]'
            cand --reason 'Why, shown to whoever is refused (e.g. "migrating the users table")'
            cand --repo 'The repository''s name (default: derived from this checkout); the paths are then repo-relative as typed'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --shared 'A shared lease: others may share the paths, but nobody may hold them exclusively'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;lease;release'= {
            cand --repo 'The repository''s name (default: derived from this checkout)'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;lease;renew'= {
            cand --ttl 'From now, how long to hold it (1s to 24h) [default: its own ttl again]'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;lease;list'= {
            cand --repo 'The repository''s name (default: derived from this checkout)'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --all 'Every repo''s leases, not only this checkout''s'
            cand --mine 'Only this peer''s leases'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;lease;check'= {
            cand --repo 'The repository''s name (default: derived from this checkout); the paths are then repo-relative as typed'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;lease;help'= {
            cand acquire 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder'
            cand release 'Release leases: by id, by path, or (no arguments) all of this peer''s in this repo'
            cand renew 'Hold one of this peer''s leases longer'
            cand list 'List the held leases of this repo (or of every repo)'
            cand check 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;lease;help;acquire'= {
        }
        &'cipc;lease;help;release'= {
        }
        &'cipc;lease;help;renew'= {
        }
        &'cipc;lease;help;list'= {
        }
        &'cipc;lease;help;check'= {
        }
        &'cipc;lease;help;help'= {
        }
        &'cipc;guard'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand install 'Add the lease check to the repository''s pre-commit hook (merged with one that exists)'
            cand remove 'Take out exactly what `install` added, restoring the hook as it was'
            cand check 'Check the staged paths against other sessions'' leases (what the hook runs)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;guard;install'= {
            cand --dir 'A directory of the repository [default: the current one]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;guard;remove'= {
            cand --dir 'A directory of the repository [default: the current one]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;guard;check'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --repo 'The repository''s name [default: derived from this checkout]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;guard;help'= {
            cand install 'Add the lease check to the repository''s pre-commit hook (merged with one that exists)'
            cand remove 'Take out exactly what `install` added, restoring the hook as it was'
            cand check 'Check the staged paths against other sessions'' leases (what the hook runs)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;guard;help;install'= {
        }
        &'cipc;guard;help;remove'= {
        }
        &'cipc;guard;help;check'= {
        }
        &'cipc;guard;help;help'= {
        }
        &'cipc;status'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;reset'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -y 'Do not ask for confirmation (required when stdin is not a terminal). Answering no to the question changes nothing and exits 0'
            cand --yes 'Do not ask for confirmation (required when stdin is not a terminal). Answering no to the question changes nothing and exits 0'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;work'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --concurrency 'Run up to N handlers at once'
            cand --timeout 'Kill a handler that runs longer than this (SIGKILL) and fail its command'
            cand --name 'A human-friendly name for the peer (default: "cipc work CMD")'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;doctor'= {
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;claude'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand setup 'Configure Claude Code so its sessions are peers of ROLE from their first moment'
            cand remove 'Take out exactly what `setup` added (the MCP server and the hooks)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;claude;setup'= {
            cand --role 'The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -)'
            cand --name 'A name for the sessions'' peers (default: the project directory and session)'
            cand --dir 'The project directory (default: the current one)'
            cand --url 'The broker''s URL'
            cand --token 'The broker has a token (given here or in CIPC_TOKEN): the MCP server entry sends it'
            cand --token-file 'Read the token from this file; the hooks read it from there too'
            cand --cipc 'The cipc program the hooks run (default: `cipc`, found on PATH, in a project''s shared files; this executable''s absolute path in your own configuration)'
            cand --scope 'Which configuration to write'
            cand --transport 'The MCP transport'
            cand --permission-wait 'How long a permission prompt relayed to the dashboard waits for the person (e.g. 10m, 1h); the terminal''s own dialog shows beside it all along and whichever answers first wins. 0 relays nothing'
            cand --claim-on-edit 'Also lease each file a session edits (30 minutes, renewed while it keeps editing, released when it ends), so other sessions are refused it. Off by default: edits of files another session leased are refused either way'
            cand --dry-run 'Print what would change and write nothing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;claude;remove'= {
            cand --scope 'Which configuration to clean'
            cand --dir 'The project directory (default: the current one)'
            cand --dry-run 'Print what would change and write nothing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;claude;help'= {
            cand setup 'Configure Claude Code so its sessions are peers of ROLE from their first moment'
            cand remove 'Take out exactly what `setup` added (the MCP server and the hooks)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;claude;help;setup'= {
        }
        &'cipc;claude;help;remove'= {
        }
        &'cipc;claude;help;help'= {
        }
        &'cipc;codex'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand setup 'Configure Codex so its sessions are peers of ROLE from their first moment'
            cand remove 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;codex;setup'= {
            cand --role 'The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -)'
            cand --name 'A name for the sessions'' peers (default: the project directory and session)'
            cand --dir 'The project directory (default: the current one)'
            cand --url 'The broker''s URL'
            cand --token 'The broker has a token (given here or in CIPC_TOKEN): the MCP server entry sends it'
            cand --token-file 'Read the token from this file; the hooks read it from there too'
            cand --cipc 'The cipc program the hooks run (default: `cipc`, found on PATH, in a project''s shared files; this executable''s absolute path in your own configuration)'
            cand --scope 'Which configuration to write'
            cand --permission-wait 'How long a permission prompt relayed to the dashboard waits for the person (e.g. 30s, 10m) before Codex asks in its own way; Codex runs the hook first, so this holds its own prompt back. 0 relays nothing'
            cand --claim-on-edit 'Also lease each file a session edits (30 minutes, renewed while it keeps editing, released when it ends), so other sessions are refused it. Off by default: edits of files another session leased are refused either way'
            cand --dry-run 'Print what would change and write nothing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;codex;remove'= {
            cand --scope 'Which configuration to clean'
            cand --dir 'The project directory (default: the current one)'
            cand --dry-run 'Print what would change and write nothing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;codex;help'= {
            cand setup 'Configure Codex so its sessions are peers of ROLE from their first moment'
            cand remove 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;codex;help;setup'= {
        }
        &'cipc;codex;help;remove'= {
        }
        &'cipc;codex;help;help'= {
        }
        &'cipc;hook'= {
            cand --agent 'Which agent runs the hook'
            cand --role 'The role this session takes'
            cand --name 'A name for the session''s peer (default: the project directory''s name)'
            cand --permission-wait 'How long a relayed permission prompt waits for an answer from the dashboard or `cipc answer` (the `permission` hook; seconds)'
            cand --url 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]'
            cand --token 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]'
            cand --token-file 'Read the token from a file that is not world-readable (wins over --token)'
            cand --peer 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]'
            cand --peer-key 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]'
            cand --claim-on-edit 'Lease each file the session edits (the `pre-tool-use` hook of the editing tools), renewed while it keeps editing, released when the session ends'
            cand --json 'Print one JSON document per result (the default when stdout is not a terminal)'
            cand --table 'Print tables and short lines even when stdout is not a terminal'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;completions'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;man'= {
            cand --dir 'Write cipc.1 and one page per subcommand (cipc-peers.1, ...) into DIR instead of printing cipc.1'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cipc;help'= {
            cand serve 'Run the broker (REST API, dashboard, MCP endpoint)'
            cand bench 'Measure a broker: command round trips, channel throughput, idle waiters'
            cand peers 'List, register and manage peers (sessions with a role)'
            cand send 'Send a command to a role, a peer, or "*" (every online peer)'
            cand wait 'Wait for the next command for this peer (--peer / CIPC_PEER) and print it'
            cand ack 'Report a command done (with a result) or failed (with --error)'
            cand result 'Wait for a command''s result and print it (exit 1 if it failed)'
            cand cancel 'Cancel a pending or delivered command'
            cand commands 'List commands, newest first (--overdue: those past their deadline)'
            cand ask 'Ask a person (or any peer) a question, wait for the answer and print it'
            cand answer 'Answer an open question (with one of its choices, if it has them)'
            cand questions 'List questions (open ones first); show, wait for or cancel one'
            cand chan 'Channels: named append-only message streams'
            cand signal 'Signals: named latches that release waiters when emitted'
            cand lease 'Leases: say which paths of a repository this session works on; see and check who holds what'
            cand guard 'A git pre-commit hook that refuses a commit of paths another session leases'
            cand status 'Peers, commands, channels and signals at a glance'
            cand reset 'Clear every peer, command, channel and signal'
            cand work 'Serve a role with any program: take orders, run CMD for each, ack with its output'
            cand doctor 'Check the broker URL, token, peer and key, and say what to fix'
            cand claude 'Make Claude Code sessions peers: MCP tools plus hooks that reach them even when idle'
            cand codex 'Make Codex sessions peers: MCP tools plus hooks, the same as for Claude Code'
            cand hook 'Run by Claude Code or Codex at each hook `cipc claude setup` or `cipc codex setup` installed (reads the hook''s JSON on stdin)'
            cand completions 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
            cand man 'Print the man page (or write every page into a directory)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cipc;help;serve'= {
        }
        &'cipc;help;bench'= {
        }
        &'cipc;help;peers'= {
            cand list 'List every known peer with its status (the default)'
            cand discover 'List online peers and the roles they hold'
            cand connect 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one'
            cand show 'Show one peer (default: --peer / CIPC_PEER)'
            cand disconnect 'Disconnect a peer: it goes offline and its unacked commands are pending again'
            cand forget 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again'
            cand prune 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than'
            cand heartbeat 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)'
            cand attention 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER'
        }
        &'cipc;help;peers;list'= {
        }
        &'cipc;help;peers;discover'= {
        }
        &'cipc;help;peers;connect'= {
        }
        &'cipc;help;peers;show'= {
        }
        &'cipc;help;peers;disconnect'= {
        }
        &'cipc;help;peers;forget'= {
        }
        &'cipc;help;peers;prune'= {
        }
        &'cipc;help;peers;heartbeat'= {
        }
        &'cipc;help;peers;attention'= {
        }
        &'cipc;help;send'= {
        }
        &'cipc;help;wait'= {
        }
        &'cipc;help;ack'= {
        }
        &'cipc;help;result'= {
        }
        &'cipc;help;cancel'= {
        }
        &'cipc;help;commands'= {
        }
        &'cipc;help;ask'= {
        }
        &'cipc;help;answer'= {
        }
        &'cipc;help;questions'= {
            cand list 'List questions, open ones first (oldest first), then the rest (the default)'
            cand show 'Show one question in full: text, choices, context, answer'
            cand wait 'Wait for a question''s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)'
            cand cancel 'Withdraw an open question (its asker''s wait ends with exit 1)'
        }
        &'cipc;help;questions;list'= {
        }
        &'cipc;help;questions;show'= {
        }
        &'cipc;help;questions;wait'= {
        }
        &'cipc;help;questions;cancel'= {
        }
        &'cipc;help;chan'= {
            cand send 'Append a message (any JSON) to a channel'
            cand read 'Print a channel''s messages after --since'
            cand follow 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)'
            cand list 'List channels with their message counts'
        }
        &'cipc;help;chan;send'= {
        }
        &'cipc;help;chan;read'= {
        }
        &'cipc;help;chan;follow'= {
        }
        &'cipc;help;chan;list'= {
        }
        &'cipc;help;signal'= {
            cand emit 'Emit (set) a signal, releasing its waiters; emitting again replaces the data'
            cand wait 'Wait until a signal is emitted and print it (exit 124 on timeout)'
            cand get 'Print a signal (emitted: false if it never was)'
            cand clear 'Clear a signal so that waiters block again (its count is kept)'
            cand list 'List every signal'
        }
        &'cipc;help;signal;emit'= {
        }
        &'cipc;help;signal;wait'= {
        }
        &'cipc;help;signal;get'= {
        }
        &'cipc;help;signal;clear'= {
        }
        &'cipc;help;signal;list'= {
        }
        &'cipc;help;lease'= {
            cand acquire 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder'
            cand release 'Release leases: by id, by path, or (no arguments) all of this peer''s in this repo'
            cand renew 'Hold one of this peer''s leases longer'
            cand list 'List the held leases of this repo (or of every repo)'
            cand check 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free'
        }
        &'cipc;help;lease;acquire'= {
        }
        &'cipc;help;lease;release'= {
        }
        &'cipc;help;lease;renew'= {
        }
        &'cipc;help;lease;list'= {
        }
        &'cipc;help;lease;check'= {
        }
        &'cipc;help;guard'= {
            cand install 'Add the lease check to the repository''s pre-commit hook (merged with one that exists)'
            cand remove 'Take out exactly what `install` added, restoring the hook as it was'
            cand check 'Check the staged paths against other sessions'' leases (what the hook runs)'
        }
        &'cipc;help;guard;install'= {
        }
        &'cipc;help;guard;remove'= {
        }
        &'cipc;help;guard;check'= {
        }
        &'cipc;help;status'= {
        }
        &'cipc;help;reset'= {
        }
        &'cipc;help;work'= {
        }
        &'cipc;help;doctor'= {
        }
        &'cipc;help;claude'= {
            cand setup 'Configure Claude Code so its sessions are peers of ROLE from their first moment'
            cand remove 'Take out exactly what `setup` added (the MCP server and the hooks)'
        }
        &'cipc;help;claude;setup'= {
        }
        &'cipc;help;claude;remove'= {
        }
        &'cipc;help;codex'= {
            cand setup 'Configure Codex so its sessions are peers of ROLE from their first moment'
            cand remove 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)'
        }
        &'cipc;help;codex;setup'= {
        }
        &'cipc;help;codex;remove'= {
        }
        &'cipc;help;hook'= {
        }
        &'cipc;help;completions'= {
        }
        &'cipc;help;man'= {
        }
        &'cipc;help;help'= {
        }
    ]
    $completions[$command]
}
