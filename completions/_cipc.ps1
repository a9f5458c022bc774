
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'cipc' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'cipc'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'cipc' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the broker (REST API, dashboard, MCP endpoint)')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Measure a broker: command round trips, channel throughput, idle waiters')
            [CompletionResult]::new('peers', 'peers', [CompletionResultType]::ParameterValue, 'List, register and manage peers (sessions with a role)')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send a command to a role, a peer, or "*" (every online peer)')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait for the next command for this peer (--peer / CIPC_PEER) and print it')
            [CompletionResult]::new('ack', 'ack', [CompletionResultType]::ParameterValue, 'Report a command done (with a result) or failed (with --error)')
            [CompletionResult]::new('result', 'result', [CompletionResultType]::ParameterValue, 'Wait for a command''s result and print it (exit 1 if it failed)')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Cancel a pending or delivered command')
            [CompletionResult]::new('commands', 'commands', [CompletionResultType]::ParameterValue, 'List commands, newest first (--overdue: those past their deadline)')
            [CompletionResult]::new('ask', 'ask', [CompletionResultType]::ParameterValue, 'Ask a person (or any peer) a question, wait for the answer and print it')
            [CompletionResult]::new('answer', 'answer', [CompletionResultType]::ParameterValue, 'Answer an open question (with one of its choices, if it has them)')
            [CompletionResult]::new('questions', 'questions', [CompletionResultType]::ParameterValue, 'List questions (open ones first); show, wait for or cancel one')
            [CompletionResult]::new('chan', 'chan', [CompletionResultType]::ParameterValue, 'Channels: named append-only message streams')
            [CompletionResult]::new('signal', 'signal', [CompletionResultType]::ParameterValue, 'Signals: named latches that release waiters when emitted')
            [CompletionResult]::new('lease', 'lease', [CompletionResultType]::ParameterValue, 'Leases: say which paths of a repository this session works on; see and check who holds what')
            [CompletionResult]::new('guard', 'guard', [CompletionResultType]::ParameterValue, 'A git pre-commit hook that refuses a commit of paths another session leases')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Peers, commands, channels and signals at a glance')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Clear every peer, command, channel and signal')
            [CompletionResult]::new('work', 'work', [CompletionResultType]::ParameterValue, 'Serve a role with any program: take orders, run CMD for each, ack with its output')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check the broker URL, token, peer and key, and say what to fix')
            [CompletionResult]::new('claude', 'claude', [CompletionResultType]::ParameterValue, 'Make Claude Code sessions peers: MCP tools plus hooks that reach them even when idle')
            [CompletionResult]::new('codex', 'codex', [CompletionResultType]::ParameterValue, 'Make Codex sessions peers: MCP tools plus hooks, the same as for Claude Code')
            [CompletionResult]::new('hook', 'hook', [CompletionResultType]::ParameterValue, 'Run by Claude Code or Codex at each hook `cipc claude setup` or `cipc codex setup` installed (reads the hook''s JSON on stdin)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script (bash, zsh, fish, elvish, powershell)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page (or write every page into a directory)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;serve' {
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Address to listen on. Anything but loopback needs a token (or --insecure-no-auth)')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'Port to listen on (0 picks a free one and prints it)')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port to listen on (0 picks a free one and prints it)')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Where the SQLite file lives [env: CIPC_DATA_DIR; ignored, with a warning, under --memory] [default: $XDG_STATE_HOME/cipc or ~/.local/state/cipc]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Keep the state in PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DB, with ?sslmode=require for TLS, verified; sslrootcert=FILE adds CAs): every node started with the same URL is the same broker')
            [CompletionResult]::new('--turn-timeout', '--turn-timeout', [CompletionResultType]::ParameterName, 'With --store: a node that holds the write turn and says nothing to PostgreSQL this long (frozen, cut off) loses it; other nodes refuse writes (503 write_turn_stalled) after waiting half as long')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Require this token from every client (prefer CIPC_TOKEN or --token-file: flags show in `ps`). At least 8 characters; under 16 draws a warning (--generate-token makes a good one)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (`chmod 600`; `--generate-token --out PATH` makes one)')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'With --generate-token: write the token to this file, mode 600, ready for --token-file (an existing file is kept unless --force)')
            [CompletionResult]::new('--allowed-host', '--allowed-host', [CompletionResultType]::ParameterName, 'Also accept this Host name (reverse proxies, DNS names); repeatable')
            [CompletionResult]::new('--max-body', '--max-body', [CompletionResultType]::ParameterName, 'Largest request body in bytes')
            [CompletionResult]::new('--channel-retention', '--channel-retention', [CompletionResultType]::ParameterName, 'Messages kept per channel; older ones are trimmed')
            [CompletionResult]::new('--command-retention', '--command-retention', [CompletionResultType]::ParameterName, 'Finished commands kept with their results; the oldest are forgotten')
            [CompletionResult]::new('--max-waiters', '--max-waiters', [CompletionResultType]::ParameterName, 'Open long-polls and streams allowed in all (429 past it)')
            [CompletionResult]::new('--stale-after', '--stale-after', [CompletionResultType]::ParameterName, 'A silent peer turns stale after this long')
            [CompletionResult]::new('--offline-after', '--offline-after', [CompletionResultType]::ParameterName, 'A silent peer goes offline (its unacked commands are requeued) after this long')
            [CompletionResult]::new('--forget-after', '--forget-after', [CompletionResultType]::ParameterName, 'An offline peer is forgotten (with its key) after this long')
            [CompletionResult]::new('--max-peers', '--max-peers', [CompletionResultType]::ParameterName, 'Peers kept at most; past it the longest-offline one is forgotten, and when none is offline a new connect gets 429')
            [CompletionResult]::new('--max-leases', '--max-leases', [CompletionResultType]::ParameterName, 'Held leases at most (every repo together); past it a new lease gets 429 until some are released or expire')
            [CompletionResult]::new('--max-mcp-sessions', '--max-mcp-sessions', [CompletionResultType]::ParameterName, 'Live MCP sessions at once; past it the longest-idle one with nothing in flight ends, and when every one is busy a new one gets 429')
            [CompletionResult]::new('--max-channels', '--max-channels', [CompletionResultType]::ParameterName, 'Channels kept at most; past it the longest-idle one nobody follows is forgotten with its messages, and when all are followed a send gets 429')
            [CompletionResult]::new('--max-signals', '--max-signals', [CompletionResultType]::ParameterName, 'Signals kept at most; past it the longest-idle one nobody waits for is forgotten, and when all are waited for an emit gets 429')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Open connections at most; past it a new one is answered 503 and closed (lowered, with a warning, to what the open-file limit allows)')
            [CompletionResult]::new('--memory', '--memory', [CompletionResultType]::ParameterName, 'Keep everything in memory; nothing survives a restart')
            [CompletionResult]::new('--generate-token', '--generate-token', [CompletionResultType]::ParameterName, 'Print a new random token and exit (with --out, write it to a file only you can read)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'With --out: replace the file if it exists')
            [CompletionResult]::new('--insecure-no-auth', '--insecure-no-auth', [CompletionResultType]::ParameterName, 'Serve a non-loopback address without a token (trusted lab networks only)')
            [CompletionResult]::new('--check-store', '--check-store', [CompletionResultType]::ParameterName, 'Run SQLite''s integrity check before starting (reads the whole file)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;bench' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'Measure this running broker instead of starting one (idle-waiter memory is then not measured). Give it twice for two nodes of one broker (`--store postgres://...`): senders use the first, workers the second')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Compare engines: round trips and channel sends on a broker of its own on SQLite, then on PostgreSQL at this URL with one node and with two (use an empty database: the benchmark leaves its data there)')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Only these measurements (default: all of them)')
            [CompletionResult]::new('--repeat', '--repeat', [CompletionResultType]::ParameterName, 'Runs of each measurement beside its floor; results are ranges')
            [CompletionResult]::new('--round-trips', '--round-trips', [CompletionResultType]::ParameterName, 'Command round trips to time')
            [CompletionResult]::new('--messages', '--messages', [CompletionResultType]::ParameterName, 'Channel messages to send in all')
            [CompletionResult]::new('--clients', '--clients', [CompletionResultType]::ParameterName, 'Concurrent channel senders')
            [CompletionResult]::new('--waiters', '--waiters', [CompletionResultType]::ParameterName, 'Idle long-poll waiters to hold open (0 skips)')
            [CompletionResult]::new('--spawns', '--spawns', [CompletionResultType]::ParameterName, 'Process spawns per CLI-vs-curl comparison (0 skips)')
            [CompletionResult]::new('--startup', '--startup', [CompletionResultType]::ParameterName, 'Instead of the rest: start-up time and memory of a durable broker whose file holds each of these many messages (e.g. 10000,100000,1000000)')
            [CompletionResult]::new('--sweep', '--sweep', [CompletionResultType]::ParameterName, 'Instead of the rest: one liveness sweep with each of these many peers (e.g. 10000,50000), each with 10,000 commands held')
            [CompletionResult]::new('--trickle', '--trickle', [CompletionResultType]::ParameterName, 'Instead of the rest: memory while this many token-less clients trickle a login body, and after they leave (e.g. 1000)')
            [CompletionResult]::new('--edit-hook', '--edit-hook', [CompletionResultType]::ParameterName, 'Instead of the rest: what Claude Code''s edit check (the `pre-tool-use` hook of Edit and Write) adds to one edit, over this many runs each, beside a bare process start (e.g. 200)')
            [CompletionResult]::new('--memory', '--memory', [CompletionResultType]::ParameterName, 'Start the broker with `--memory` (default: durable, in a temporary dir)')
            [CompletionResult]::new('--durable', '--durable', [CompletionResultType]::ParameterName, 'Durable (the default); with `--memory`, both brokers, one after the other')
            [CompletionResult]::new('--no-redis', '--no-redis', [CompletionResultType]::ParameterName, 'Do not start `redis-server` for the durable floors, even if installed')
            [CompletionResult]::new('--smoke', '--smoke', [CompletionResultType]::ParameterName, 'The CI-light run: every row briefly on a memory and a durable broker, exit 1 if a ratio to its floor is more than twice its bound, or a durable round trip costs more than 2.5 commits')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the results as JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every known peer with its status (the default)')
            [CompletionResult]::new('discover', 'discover', [CompletionResultType]::ParameterValue, 'List online peers and the roles they hold')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one peer (default: --peer / CIPC_PEER)')
            [CompletionResult]::new('disconnect', 'disconnect', [CompletionResultType]::ParameterValue, 'Disconnect a peer: it goes offline and its unacked commands are pending again')
            [CompletionResult]::new('forget', 'forget', [CompletionResultType]::ParameterValue, 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than')
            [CompletionResult]::new('heartbeat', 'heartbeat', [CompletionResultType]::ParameterValue, 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)')
            [CompletionResult]::new('attention', 'attention', [CompletionResultType]::ParameterValue, 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;peers;list' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;discover' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;connect' {
            [CompletionResult]::new('--cap', '--cap', [CompletionResultType]::ParameterName, 'A capability tag; repeatable, or comma-separated')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A human-friendly name')
            [CompletionResult]::new('--id', '--id', [CompletionResultType]::ParameterName, 'Reconnect as this known peer id instead of getting a new one')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--new', '--new', [CompletionResultType]::ParameterName, 'Register a new peer even when CIPC_PEER names one of this role')
            [CompletionResult]::new('--export', '--export', [CompletionResultType]::ParameterName, 'Print only `export CIPC_PEER=<id> CIPC_PEER_KEY=<key>`, for eval "$(cipc peers connect ROLE --export)". The key proves this peer; keep it out of logs')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;show' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;disconnect' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;forget' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;prune' {
            [CompletionResult]::new('--older-than', '--older-than', [CompletionResultType]::ParameterName, 'Only peers last seen at least this long ago (e.g. 1h, 2days)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'List what would be forgotten, and forget nothing')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;heartbeat' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;attention' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;peers;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every known peer with its status (the default)')
            [CompletionResult]::new('discover', 'discover', [CompletionResultType]::ParameterValue, 'List online peers and the roles they hold')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one peer (default: --peer / CIPC_PEER)')
            [CompletionResult]::new('disconnect', 'disconnect', [CompletionResultType]::ParameterValue, 'Disconnect a peer: it goes offline and its unacked commands are pending again')
            [CompletionResult]::new('forget', 'forget', [CompletionResultType]::ParameterValue, 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than')
            [CompletionResult]::new('heartbeat', 'heartbeat', [CompletionResultType]::ParameterValue, 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)')
            [CompletionResult]::new('attention', 'attention', [CompletionResultType]::ParameterValue, 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;peers;help;list' {
            break
        }
        'cipc;peers;help;discover' {
            break
        }
        'cipc;peers;help;connect' {
            break
        }
        'cipc;peers;help;show' {
            break
        }
        'cipc;peers;help;disconnect' {
            break
        }
        'cipc;peers;help;forget' {
            break
        }
        'cipc;peers;help;prune' {
            break
        }
        'cipc;peers;help;heartbeat' {
            break
        }
        'cipc;peers;help;attention' {
            break
        }
        'cipc;peers;help;help' {
            break
        }
        'cipc;send' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'One parameter: key=value (a string) or key:=JSON (a number, object, ...); repeatable')
            [CompletionResult]::new('--param', '--param', [CompletionResultType]::ParameterName, 'One parameter: key=value (a string) or key:=JSON (a number, object, ...); repeatable')
            [CompletionResult]::new('--params', '--params', [CompletionResultType]::ParameterName, 'All parameters as JSON: inline, @file, or - for stdin (--param adds to it)')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Who is sending [default: this peer''s role, else "anonymous"]')
            [CompletionResult]::new('--dedupe-key', '--dedupe-key', [CompletionResultType]::ParameterName, 'An idempotency key: sending it again answers the original command')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Let the command expire if nobody takes it within this long (e.g. 10m)')
            [CompletionResult]::new('--deadline', '--deadline', [CompletionResultType]::ParameterName, 'It should be finished within this long (e.g. 10m): past it, an unfinished command is marked overdue, shown to the people watching and listed by `cipc commands --overdue`. It keeps running')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'With --wait: give up after this long (exit 124) [default: 5m]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('--require-online', '--require-online', [CompletionResultType]::ParameterName, 'Refuse to send (exit 1) unless an online peer holds the target (has that role, or is that peer) right now; without it a command for an absent role is queued until one connects')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Block until the command is acked and print its result alone, into a pipe too (--json: the whole command; exit 1 if it failed)')
            [CompletionResult]::new('--forever', '--forever', [CompletionResultType]::ParameterName, 'With --wait: wait as long as it takes')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;wait' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (exit 124)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('--forever', '--forever', [CompletionResultType]::ParameterName, 'Wait as long as it takes')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;ack' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--result', '--result', [CompletionResultType]::ParameterName, 'It succeeded, with this outcome as JSON: inline, @file, or - for stdin')
            [CompletionResult]::new('--error', '--error', [CompletionResultType]::ParameterName, 'It failed, with this message (instead of --result: a command either succeeded or failed)')
            [CompletionResult]::new('--attempt', '--attempt', [CompletionResultType]::ParameterName, 'The delivery you are acking (`attempt` in what `cipc wait` printed): if the command was since given to another taker, the ack is refused')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;result' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (exit 124)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('--forever', '--forever', [CompletionResultType]::ParameterName, 'Wait as long as it takes')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;cancel' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;commands' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only commands with this status')
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'Only commands sent to this target (a role, a peer id, or "*")')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many, newest first (broker default 100)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('--overdue', '--overdue', [CompletionResultType]::ParameterName, 'Only commands whose deadline (`send --deadline`) passed before they finished: still running late, or finished late')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;ask' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'One answer the person may pick; repeatable, in order [default: any text]')
            [CompletionResult]::new('--choice', '--choice', [CompletionResultType]::ParameterName, 'One answer the person may pick; repeatable, in order [default: any text]')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'What helps to answer it (a diff summary, a command id): JSON inline, @file, or - for stdin')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Stop waiting after this long (exit 124; the question stays open) [default: 30m]')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Let the question expire if nobody answers it within this long (e.g. 1h)')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Who asks [default: this peer''s role, else "anonymous"]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('--forever', '--forever', [CompletionResultType]::ParameterName, 'Wait as long as it takes')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Ask and return at once, printing the question''s id (JSON mode: the question); collect the answer later with `cipc questions wait ID`')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;answer' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--by', '--by', [CompletionResultType]::ParameterName, 'Who answers [default: this peer''s role, else "someone"]')
            [CompletionResult]::new('--note', '--note', [CompletionResultType]::ParameterName, 'Words that travel with the answer: for a permission, the reason the session is shown (e.g. cipc answer ID deny --note "use a branch")')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;questions' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only questions with this status (when listing)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List questions, open ones first (oldest first), then the rest (the default)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one question in full: text, choices, context, answer')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait for a question''s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Withdraw an open question (its asker''s wait ends with exit 1)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;questions;list' {
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only questions with this status')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;questions;show' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;questions;wait' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Stop waiting after this long (exit 124; the question stays open)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--forever', '--forever', [CompletionResultType]::ParameterName, 'Wait as long as it takes')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;questions;cancel' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;questions;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List questions, open ones first (oldest first), then the rest (the default)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one question in full: text, choices, context, answer')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait for a question''s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Withdraw an open question (its asker''s wait ends with exit 1)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;questions;help;list' {
            break
        }
        'cipc;questions;help;show' {
            break
        }
        'cipc;questions;help;wait' {
            break
        }
        'cipc;questions;help;cancel' {
            break
        }
        'cipc;questions;help;help' {
            break
        }
        'cipc;chan' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Append a message (any JSON) to a channel')
            [CompletionResult]::new('read', 'read', [CompletionResultType]::ParameterValue, 'Print a channel''s messages after --since')
            [CompletionResult]::new('follow', 'follow', [CompletionResultType]::ParameterValue, 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List channels with their message counts')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;chan;send' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;chan;read' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only messages with a seq greater than this')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many messages (broker default 1000)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;chan;follow' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Start after this seq (0: the whole history) [default: only new messages]')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;chan;list' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;chan;help' {
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Append a message (any JSON) to a channel')
            [CompletionResult]::new('read', 'read', [CompletionResultType]::ParameterValue, 'Print a channel''s messages after --since')
            [CompletionResult]::new('follow', 'follow', [CompletionResultType]::ParameterValue, 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List channels with their message counts')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;chan;help;send' {
            break
        }
        'cipc;chan;help;read' {
            break
        }
        'cipc;chan;help;follow' {
            break
        }
        'cipc;chan;help;list' {
            break
        }
        'cipc;chan;help;help' {
            break
        }
        'cipc;signal' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('emit', 'emit', [CompletionResultType]::ParameterValue, 'Emit (set) a signal, releasing its waiters; emitting again replaces the data')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait until a signal is emitted and print it (exit 124 on timeout)')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Print a signal (emitted: false if it never was)')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Clear a signal so that waiters block again (its count is kept)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every signal')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;signal;emit' {
            [CompletionResult]::new('--data', '--data', [CompletionResultType]::ParameterName, 'Data carried by the signal: JSON inline, @file, or - for stdin')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;signal;wait' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long')
            [CompletionResult]::new('--after', '--after', [CompletionResultType]::ParameterName, 'Wait for an emission newer than this count (from an earlier `get`/`wait`)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--forever', '--forever', [CompletionResultType]::ParameterName, 'Wait as long as it takes')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;signal;get' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;signal;clear' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;signal;list' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;signal;help' {
            [CompletionResult]::new('emit', 'emit', [CompletionResultType]::ParameterValue, 'Emit (set) a signal, releasing its waiters; emitting again replaces the data')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait until a signal is emitted and print it (exit 124 on timeout)')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Print a signal (emitted: false if it never was)')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Clear a signal so that waiters block again (its count is kept)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every signal')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;signal;help;emit' {
            break
        }
        'cipc;signal;help;wait' {
            break
        }
        'cipc;signal;help;get' {
            break
        }
        'cipc;signal;help;clear' {
            break
        }
        'cipc;signal;help;list' {
            break
        }
        'cipc;signal;help;help' {
            break
        }
        'cipc;lease' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('acquire', 'acquire', [CompletionResultType]::ParameterValue, 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder')
            [CompletionResult]::new('release', 'release', [CompletionResultType]::ParameterValue, 'Release leases: by id, by path, or (no arguments) all of this peer''s in this repo')
            [CompletionResult]::new('renew', 'renew', [CompletionResultType]::ParameterValue, 'Hold one of this peer''s leases longer')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the held leases of this repo (or of every repo)')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;lease;acquire' {
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'How long to hold them unless renewed (1s to 24h) [default: 30m]')
            [CompletionResult]::new('--reason', '--reason', [CompletionResultType]::ParameterName, 'Why, shown to whoever is refused (e.g. "migrating the users table")')
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'The repository''s name (default: derived from this checkout); the paths are then repo-relative as typed')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--shared', '--shared', [CompletionResultType]::ParameterName, 'A shared lease: others may share the paths, but nobody may hold them exclusively')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;lease;release' {
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'The repository''s name (default: derived from this checkout)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;lease;renew' {
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'From now, how long to hold it (1s to 24h) [default: its own ttl again]')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;lease;list' {
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'The repository''s name (default: derived from this checkout)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Every repo''s leases, not only this checkout''s')
            [CompletionResult]::new('--mine', '--mine', [CompletionResultType]::ParameterName, 'Only this peer''s leases')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;lease;check' {
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'The repository''s name (default: derived from this checkout); the paths are then repo-relative as typed')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;lease;help' {
            [CompletionResult]::new('acquire', 'acquire', [CompletionResultType]::ParameterValue, 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder')
            [CompletionResult]::new('release', 'release', [CompletionResultType]::ParameterValue, 'Release leases: by id, by path, or (no arguments) all of this peer''s in this repo')
            [CompletionResult]::new('renew', 'renew', [CompletionResultType]::ParameterValue, 'Hold one of this peer''s leases longer')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the held leases of this repo (or of every repo)')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;lease;help;acquire' {
            break
        }
        'cipc;lease;help;release' {
            break
        }
        'cipc;lease;help;renew' {
            break
        }
        'cipc;lease;help;list' {
            break
        }
        'cipc;lease;help;check' {
            break
        }
        'cipc;lease;help;help' {
            break
        }
        'cipc;guard' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Add the lease check to the repository''s pre-commit hook (merged with one that exists)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `install` added, restoring the hook as it was')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Check the staged paths against other sessions'' leases (what the hook runs)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;guard;install' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'A directory of the repository [default: the current one]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;guard;remove' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'A directory of the repository [default: the current one]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;guard;check' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'The repository''s name [default: derived from this checkout]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;guard;help' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Add the lease check to the repository''s pre-commit hook (merged with one that exists)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `install` added, restoring the hook as it was')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Check the staged paths against other sessions'' leases (what the hook runs)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;guard;help;install' {
            break
        }
        'cipc;guard;help;remove' {
            break
        }
        'cipc;guard;help;check' {
            break
        }
        'cipc;guard;help;help' {
            break
        }
        'cipc;status' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;reset' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when stdin is not a terminal). Answering no to the question changes nothing and exits 0')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when stdin is not a terminal). Answering no to the question changes nothing and exits 0')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;work' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Run up to N handlers at once')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Kill a handler that runs longer than this (SIGKILL) and fail its command')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A human-friendly name for the peer (default: "cipc work CMD")')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;doctor' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;claude' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure Claude Code so its sessions are peers of ROLE from their first moment')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `setup` added (the MCP server and the hooks)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;claude;setup' {
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -)')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name for the sessions'' peers (default: the project directory and session)')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'The project directory (default: the current one)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker has a token (given here or in CIPC_TOKEN): the MCP server entry sends it')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from this file; the hooks read it from there too')
            [CompletionResult]::new('--cipc', '--cipc', [CompletionResultType]::ParameterName, 'The cipc program the hooks run (default: `cipc`, found on PATH, in a project''s shared files; this executable''s absolute path in your own configuration)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Which configuration to write')
            [CompletionResult]::new('--transport', '--transport', [CompletionResultType]::ParameterName, 'The MCP transport')
            [CompletionResult]::new('--permission-wait', '--permission-wait', [CompletionResultType]::ParameterName, 'How long a permission prompt relayed to the dashboard waits for the person (e.g. 10m, 1h); the terminal''s own dialog shows beside it all along and whichever answers first wins. 0 relays nothing')
            [CompletionResult]::new('--claim-on-edit', '--claim-on-edit', [CompletionResultType]::ParameterName, 'Also lease each file a session edits (30 minutes, renewed while it keeps editing, released when it ends), so other sessions are refused it. Off by default: edits of files another session leased are refused either way')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print what would change and write nothing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;claude;remove' {
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Which configuration to clean')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'The project directory (default: the current one)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print what would change and write nothing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;claude;help' {
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure Claude Code so its sessions are peers of ROLE from their first moment')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `setup` added (the MCP server and the hooks)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;claude;help;setup' {
            break
        }
        'cipc;claude;help;remove' {
            break
        }
        'cipc;claude;help;help' {
            break
        }
        'cipc;codex' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure Codex so its sessions are peers of ROLE from their first moment')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;codex;setup' {
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -)')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name for the sessions'' peers (default: the project directory and session)')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'The project directory (default: the current one)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker has a token (given here or in CIPC_TOKEN): the MCP server entry sends it')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from this file; the hooks read it from there too')
            [CompletionResult]::new('--cipc', '--cipc', [CompletionResultType]::ParameterName, 'The cipc program the hooks run (default: `cipc`, found on PATH, in a project''s shared files; this executable''s absolute path in your own configuration)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Which configuration to write')
            [CompletionResult]::new('--permission-wait', '--permission-wait', [CompletionResultType]::ParameterName, 'How long a permission prompt relayed to the dashboard waits for the person (e.g. 30s, 10m) before Codex asks in its own way; Codex runs the hook first, so this holds its own prompt back. 0 relays nothing')
            [CompletionResult]::new('--claim-on-edit', '--claim-on-edit', [CompletionResultType]::ParameterName, 'Also lease each file a session edits (30 minutes, renewed while it keeps editing, released when it ends), so other sessions are refused it. Off by default: edits of files another session leased are refused either way')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print what would change and write nothing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;codex;remove' {
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Which configuration to clean')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'The project directory (default: the current one)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print what would change and write nothing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;codex;help' {
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure Codex so its sessions are peers of ROLE from their first moment')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;codex;help;setup' {
            break
        }
        'cipc;codex;help;remove' {
            break
        }
        'cipc;codex;help;help' {
            break
        }
        'cipc;hook' {
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Which agent runs the hook')
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'The role this session takes')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name for the session''s peer (default: the project directory''s name)')
            [CompletionResult]::new('--permission-wait', '--permission-wait', [CompletionResultType]::ParameterName, 'How long a relayed permission prompt waits for an answer from the dashboard or `cipc answer` (the `permission` hook; seconds)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The broker''s URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The broker''s token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token from a file that is not world-readable (wins over --token)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'This session''s peer id, sent as X-Cipc-Peer (see `cipc peers connect --export`); the full id, or a unique part of it [env: CIPC_PEER]')
            [CompletionResult]::new('--peer-key', '--peer-key', [CompletionResultType]::ParameterName, 'This session''s peer key, sent as X-Cipc-Peer-Key: it proves the peer (`cipc peers connect --export` sets it; the key alone also names the peer) [env: CIPC_PEER_KEY]')
            [CompletionResult]::new('--claim-on-edit', '--claim-on-edit', [CompletionResultType]::ParameterName, 'Lease each file the session edits (the `pre-tool-use` hook of the editing tools), renewed while it keeps editing, released when the session ends')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document per result (the default when stdout is not a terminal)')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Print tables and short lines even when stdout is not a terminal')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;completions' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;man' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Write cipc.1 and one page per subcommand (cipc-peers.1, ...) into DIR instead of printing cipc.1')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cipc;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the broker (REST API, dashboard, MCP endpoint)')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Measure a broker: command round trips, channel throughput, idle waiters')
            [CompletionResult]::new('peers', 'peers', [CompletionResultType]::ParameterValue, 'List, register and manage peers (sessions with a role)')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send a command to a role, a peer, or "*" (every online peer)')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait for the next command for this peer (--peer / CIPC_PEER) and print it')
            [CompletionResult]::new('ack', 'ack', [CompletionResultType]::ParameterValue, 'Report a command done (with a result) or failed (with --error)')
            [CompletionResult]::new('result', 'result', [CompletionResultType]::ParameterValue, 'Wait for a command''s result and print it (exit 1 if it failed)')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Cancel a pending or delivered command')
            [CompletionResult]::new('commands', 'commands', [CompletionResultType]::ParameterValue, 'List commands, newest first (--overdue: those past their deadline)')
            [CompletionResult]::new('ask', 'ask', [CompletionResultType]::ParameterValue, 'Ask a person (or any peer) a question, wait for the answer and print it')
            [CompletionResult]::new('answer', 'answer', [CompletionResultType]::ParameterValue, 'Answer an open question (with one of its choices, if it has them)')
            [CompletionResult]::new('questions', 'questions', [CompletionResultType]::ParameterValue, 'List questions (open ones first); show, wait for or cancel one')
            [CompletionResult]::new('chan', 'chan', [CompletionResultType]::ParameterValue, 'Channels: named append-only message streams')
            [CompletionResult]::new('signal', 'signal', [CompletionResultType]::ParameterValue, 'Signals: named latches that release waiters when emitted')
            [CompletionResult]::new('lease', 'lease', [CompletionResultType]::ParameterValue, 'Leases: say which paths of a repository this session works on; see and check who holds what')
            [CompletionResult]::new('guard', 'guard', [CompletionResultType]::ParameterValue, 'A git pre-commit hook that refuses a commit of paths another session leases')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Peers, commands, channels and signals at a glance')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Clear every peer, command, channel and signal')
            [CompletionResult]::new('work', 'work', [CompletionResultType]::ParameterValue, 'Serve a role with any program: take orders, run CMD for each, ack with its output')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check the broker URL, token, peer and key, and say what to fix')
            [CompletionResult]::new('claude', 'claude', [CompletionResultType]::ParameterValue, 'Make Claude Code sessions peers: MCP tools plus hooks that reach them even when idle')
            [CompletionResult]::new('codex', 'codex', [CompletionResultType]::ParameterValue, 'Make Codex sessions peers: MCP tools plus hooks, the same as for Claude Code')
            [CompletionResult]::new('hook', 'hook', [CompletionResultType]::ParameterValue, 'Run by Claude Code or Codex at each hook `cipc claude setup` or `cipc codex setup` installed (reads the hook''s JSON on stdin)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script (bash, zsh, fish, elvish, powershell)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page (or write every page into a directory)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cipc;help;serve' {
            break
        }
        'cipc;help;bench' {
            break
        }
        'cipc;help;peers' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every known peer with its status (the default)')
            [CompletionResult]::new('discover', 'discover', [CompletionResultType]::ParameterValue, 'List online peers and the roles they hold')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Register this session as a protected peer with ROLE and print it with its key (needed to act as it; reconnecting with --id needs it too). When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that peer is reconnected (same id, same key) instead; --new registers another one')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one peer (default: --peer / CIPC_PEER)')
            [CompletionResult]::new('disconnect', 'disconnect', [CompletionResultType]::ParameterValue, 'Disconnect a peer: it goes offline and its unacked commands are pending again')
            [CompletionResult]::new('forget', 'forget', [CompletionResultType]::ParameterValue, 'Forget a peer for good (its key too): an offline one needs no key, an online one is forgotten only by itself. Its unacked commands are pending again')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Forget every offline peer (the ghosts of sessions that ended), or only those offline for at least --older-than')
            [CompletionResult]::new('heartbeat', 'heartbeat', [CompletionResultType]::ParameterValue, 'Tell the broker this peer is alive (default: --peer / CIPC_PEER)')
            [CompletionResult]::new('attention', 'attention', [CompletionResultType]::ParameterValue, 'Say why a person is needed now (shown in `cipc peers` and the dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER')
            break
        }
        'cipc;help;peers;list' {
            break
        }
        'cipc;help;peers;discover' {
            break
        }
        'cipc;help;peers;connect' {
            break
        }
        'cipc;help;peers;show' {
            break
        }
        'cipc;help;peers;disconnect' {
            break
        }
        'cipc;help;peers;forget' {
            break
        }
        'cipc;help;peers;prune' {
            break
        }
        'cipc;help;peers;heartbeat' {
            break
        }
        'cipc;help;peers;attention' {
            break
        }
        'cipc;help;send' {
            break
        }
        'cipc;help;wait' {
            break
        }
        'cipc;help;ack' {
            break
        }
        'cipc;help;result' {
            break
        }
        'cipc;help;cancel' {
            break
        }
        'cipc;help;commands' {
            break
        }
        'cipc;help;ask' {
            break
        }
        'cipc;help;answer' {
            break
        }
        'cipc;help;questions' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List questions, open ones first (oldest first), then the rest (the default)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one question in full: text, choices, context, answer')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait for a question''s answer and print it, like `cipc ask` (exit 1 if it was cancelled or expired, 124 on timeout)')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Withdraw an open question (its asker''s wait ends with exit 1)')
            break
        }
        'cipc;help;questions;list' {
            break
        }
        'cipc;help;questions;show' {
            break
        }
        'cipc;help;questions;wait' {
            break
        }
        'cipc;help;questions;cancel' {
            break
        }
        'cipc;help;chan' {
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Append a message (any JSON) to a channel')
            [CompletionResult]::new('read', 'read', [CompletionResultType]::ParameterValue, 'Print a channel''s messages after --since')
            [CompletionResult]::new('follow', 'follow', [CompletionResultType]::ParameterValue, 'Print new messages as they arrive, until Ctrl-C (reconnects by itself)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List channels with their message counts')
            break
        }
        'cipc;help;chan;send' {
            break
        }
        'cipc;help;chan;read' {
            break
        }
        'cipc;help;chan;follow' {
            break
        }
        'cipc;help;chan;list' {
            break
        }
        'cipc;help;signal' {
            [CompletionResult]::new('emit', 'emit', [CompletionResultType]::ParameterValue, 'Emit (set) a signal, releasing its waiters; emitting again replaces the data')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait until a signal is emitted and print it (exit 124 on timeout)')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Print a signal (emitted: false if it never was)')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Clear a signal so that waiters block again (its count is kept)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every signal')
            break
        }
        'cipc;help;signal;emit' {
            break
        }
        'cipc;help;signal;wait' {
            break
        }
        'cipc;help;signal;get' {
            break
        }
        'cipc;help;signal;clear' {
            break
        }
        'cipc;help;signal;list' {
            break
        }
        'cipc;help;lease' {
            [CompletionResult]::new('acquire', 'acquire', [CompletionResultType]::ParameterValue, 'Hold paths for this peer; refused (nothing taken, exit 1) when another session holds any of them, naming each holder')
            [CompletionResult]::new('release', 'release', [CompletionResultType]::ParameterValue, 'Release leases: by id, by path, or (no arguments) all of this peer''s in this repo')
            [CompletionResult]::new('renew', 'renew', [CompletionResultType]::ParameterValue, 'Hold one of this peer''s leases longer')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the held leases of this repo (or of every repo)')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Whether another session holds any of these paths: exit 1 naming each (path, holder, reason, expiry), exit 0 when all are free')
            break
        }
        'cipc;help;lease;acquire' {
            break
        }
        'cipc;help;lease;release' {
            break
        }
        'cipc;help;lease;renew' {
            break
        }
        'cipc;help;lease;list' {
            break
        }
        'cipc;help;lease;check' {
            break
        }
        'cipc;help;guard' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Add the lease check to the repository''s pre-commit hook (merged with one that exists)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `install` added, restoring the hook as it was')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Check the staged paths against other sessions'' leases (what the hook runs)')
            break
        }
        'cipc;help;guard;install' {
            break
        }
        'cipc;help;guard;remove' {
            break
        }
        'cipc;help;guard;check' {
            break
        }
        'cipc;help;status' {
            break
        }
        'cipc;help;reset' {
            break
        }
        'cipc;help;work' {
            break
        }
        'cipc;help;doctor' {
            break
        }
        'cipc;help;claude' {
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure Claude Code so its sessions are peers of ROLE from their first moment')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `setup` added (the MCP server and the hooks)')
            break
        }
        'cipc;help;claude;setup' {
            break
        }
        'cipc;help;claude;remove' {
            break
        }
        'cipc;help;codex' {
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure Codex so its sessions are peers of ROLE from their first moment')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take out exactly what `setup` added (the MCP server, the hooks and their trust)')
            break
        }
        'cipc;help;codex;setup' {
            break
        }
        'cipc;help;codex;remove' {
            break
        }
        'cipc;help;hook' {
            break
        }
        'cipc;help;completions' {
            break
        }
        'cipc;help;man' {
            break
        }
        'cipc;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
