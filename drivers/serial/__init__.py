"""GSM modems on serial ports: AT commands in PDU mode (text mode as a fallback).

    at.py       the AT line protocol, sans-I/O
    pdu.py      SMS PDUs, both directions
    textmode.py AT+CMGF=1 for modems that need it
    errors.py   what +CME / +CMS ERROR codes and TP-Status mean for a message
    port.py     one port on pyserial-asyncio, one command at a time
    session.py  the init sequence and status queries
    inbox.py    inbound messages and status reports
    channel.py  SerialChannel: lifecycle, reset and reopen, sending
    probe.py    `smsgw modem probe`
"""

from drivers.serial.channel import SerialChannel, SerialOptions, build

__all__ = ["SerialChannel", "SerialOptions", "build"]
