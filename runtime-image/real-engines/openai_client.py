"""Drives a served engine with the official `openai` client for the real-engine test.

  chat BASE_URL MODEL          one completion, then one streamed; prints a JSON summary
  load BASE_URL MODEL N TOKENS N concurrent completions of TOKENS tokens each; prints
                               how many finished
Random-weight models may emit their end-of-sequence token at once, so requests ask the
engine to ignore it (`ignore_eos`, which vLLM and llama-server both accept) and generate
exactly the tokens asked for.
"""

import asyncio
import json
import sys

from openai import AsyncOpenAI, OpenAI

PROMPT = [{"role": "user", "content": "The model of request 3 waits in the queue"}]
NO_EOS = {"ignore_eos": True}


def chat(base: str, model: str) -> None:
    client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    full = client.chat.completions.create(
        model=model, messages=PROMPT, max_tokens=8, temperature=0, extra_body=NO_EOS
    )
    chunks, text = 0, ""
    stream = client.chat.completions.create(
        model=model,
        messages=PROMPT,
        max_tokens=8,
        temperature=0,
        stream=True,
        extra_body=NO_EOS,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            text += chunk.choices[0].delta.content
    print(
        json.dumps(
            {
                "model": full.model,
                "content": full.choices[0].message.content,
                "finish_reason": full.choices[0].finish_reason,
                "completion_tokens": full.usage.completion_tokens,
                "stream_chunks": chunks,
                "stream_content": text,
            }
        )
    )


async def load(base: str, model: str, n: int, tokens: int) -> None:
    client = AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=600)

    async def one() -> int:
        r = await client.chat.completions.create(
            model=model, messages=PROMPT, max_tokens=tokens, extra_body=NO_EOS
        )
        return r.usage.completion_tokens

    done = await asyncio.gather(*(one() for _ in range(n)))
    print(json.dumps({"completed": len(done), "completion_tokens": done}))


def main() -> None:
    mode, base, model = sys.argv[1:4]
    if mode == "chat":
        chat(base, model)
    elif mode == "load":
        asyncio.run(load(base, model, int(sys.argv[4]), int(sys.argv[5])))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
