"""Outbound calls (StartCall): the carrier dials the number and, once answered, fetches our
TwiML webhook, which connects the call's media stream to a gateway like any inbound call.

Only Twilio is wired: it needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and VOXBUS_PUBLIC_URL
(the https URL Twilio reaches the gateway at). The others get FAILED_PRECONDITION.
"""

from __future__ import annotations

import re

import grpc

from voxbus.v1.control_pb2 import StartCallRequest
from voxbus_common.config import GatewayService
from voxbus_gateway.edges.twilio_rest import TwilioRest, TwilioRestError

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class OutboundError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


async def start_twilio_call(settings: GatewayService, request: StartCallRequest) -> str:
    """The Twilio CallSid of the new call."""
    if request.carrier not in ("", "twilio"):
        raise OutboundError(grpc.StatusCode.UNIMPLEMENTED,
                            f"outbound calls through {request.carrier!r} are not supported; "
                            "only twilio")
    for name, number in (("to", request.to), ("from", getattr(request, "from"))):
        if not E164.fullmatch(number):
            raise OutboundError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"'{name}' must be an E.164 number like +15550100199")
    missing = [name for name, value in (
        ("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
        ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
        ("VOXBUS_PUBLIC_URL", settings.public_url)) if not value]
    if missing:
        raise OutboundError(grpc.StatusCode.FAILED_PRECONDITION,
                            f"outbound calls need {', '.join(missing)}")
    rest = TwilioRest(settings.twilio_account_sid, settings.twilio_auth_token,
                      settings.twilio_api_base)
    try:
        return await rest.create_call(request.to, getattr(request, "from"),
                                      settings.public_url.rstrip("/") + "/v1/twilio/voice")
    except TwilioRestError as exc:
        raise OutboundError(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
