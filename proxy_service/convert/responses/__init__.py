"""OpenAI Responses API on a Chat Completions upstream ("bridge" mode, stateless): pure conversions.

request.py turns a `POST /v1/responses` body into a chat.completions body, response.py turns a
chat.completion into a Response object, stream.py turns chat.completion.chunk SSE into Responses
SSE events, errors.py maps upstream errors onto the Responses error shape. No I/O here.
"""

from proxy_service.convert.responses.errors import (
    InvalidRequest,
    PreviousResponseNotFound,
    UnsupportedParameter,
    UnsupportedTool,
    error_body,
    request_error,
    responses_error,
)
from proxy_service.convert.responses.request import (
    ConvertedRequest,
    ResponsesOptions,
    responses_to_chat_request,
)
from proxy_service.convert.responses.response import chat_to_response, new_response_id
from proxy_service.convert.responses.stream import ResponsesStreamTranslator

__all__ = [
    "ConvertedRequest",
    "InvalidRequest",
    "PreviousResponseNotFound",
    "ResponsesOptions",
    "ResponsesStreamTranslator",
    "UnsupportedParameter",
    "UnsupportedTool",
    "chat_to_response",
    "error_body",
    "new_response_id",
    "request_error",
    "responses_error",
    "responses_to_chat_request",
]
