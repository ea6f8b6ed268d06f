"""Fast fake upstream speaking the OpenAI, Anthropic and Gemini wire formats.

One Tornado app, one port, one prefix per API, so that each provider's
official SDK can use the prefix as its ``base_url``:

    openai     http://HOST:PORT/openai/v1   chat/completions, completions, embeddings, models,
                                            images/generations, images/edits
    anthropic  http://HOST:PORT/anthropic   /v1/messages, /v1/models
    gemini     http://HOST:PORT/gemini      /v1beta/models[/{m}:{method}]

Behaviour is driven by the request itself (no per-test setup):
  * reply text is ``"Mock reply to: <last user text>"``; token counts are
    whitespace word counts (prompt = all message text, completion = reply);
  * if tools are offered and the last user message contains "tool", the reply
    is a call to the first tool with arguments ``{"query": <last user text>}``;
  * a model name OR an API key starting with ``fail-500``, ``fail-429``,
    ``hang``, ``drop-mid-stream`` or ``bad-json`` injects that fault; keys
    ``invalid`` / ``sk-invalid...`` are rejected with 401.

``GET /_mock/stats`` returns per-endpoint call counts, ``DELETE`` resets them; with a model-list
rate limit, ``<api>.models.429`` count the refused calls among ``<api>.models`` (``total`` counts
requests, so not them twice). ``GET /_mock/config`` returns the effective timing configuration.

Run it with ``forge-ref mock-provider`` or ``python -m forge_mock`` (the same flags, defined once
in ``config.py``), or ``forge_mock.app.run(**options)`` from Python:

    --host H                      address to listen on (127.0.0.1)
    --port P                      port (8001; 0 picks a free one, announced on stdout)
    --latency-ms MS               delay before every answer, any endpoint (0)
    --chunks N                    pieces a streamed reply is split into (4; timing model off)
    --chunk-delay-ms MS           delay between stream frames (0; timing model off)

The timing model (``timing.py``), off unless one of its first three flags is given; ``LOW-HIGH``
is a uniform draw per answer, a single ``N`` a fixed value; ``--seed`` makes the draws repeat:

    --ttft-ms MS                  median time to first token of a chat answer (lognormal)
    --ttft-sigma S                sigma of ln(TTFT) (0: always the median)
    --token-rate LOW-HIGH         tokens per second after the first (unset: all at once)
    --output-tokens LOW-HIGH      answer length in tokens (filler words pad the reply text)
    --tokens-per-chunk N          tokens per stream chunk (1)
    --models-latency-ms LOW-HIGH  delay of a model-list answer
    --models-rate-limit N         model-list calls per API key and API in a sliding window (0: off);
                                  beyond: 429 in the API's shape with Retry-After
    --models-rate-window S        that window (60 s)
    --seed N                      seed of the random draws (0)

Token ``i`` (from 0) is ready at ``TTFT + i / rate``: a stream chunk leaves with its last token,
a whole answer with the last of all, and usage counts exactly the tokens sent.

Modules: ``base`` (what the APIs share), ``openai``, ``anthropic``, ``gemini`` (one wire format
each, like ``forge_ref/adapters``), ``images`` (OpenAI's image API), ``replies`` (request text in,
reply text and pieces out), ``timing`` (the draws and the pace), ``ratelimit`` (the model-list
limit), ``config`` (the options), ``app`` (routes and serving).
The gateway (``forge_ref``) never imports this package except to run ``forge-ref mock-provider``.

The hot path is kept lean on purpose (benchmarks push thousands of req/s
through it on one core): orjson, pre-serialised constant bodies, no access
log, no etag hashing, no timer at all when a delay is 0.
"""
