"""bitcoin/psbt.py: the BIP174 test vectors (every invalid one rejected for its
reason, the valid ones re-serialized byte for byte, creator/finalizer/extractor
outputs), our own PSBTs round-tripped, signed, finalized and checked by
Bitcoin Core's interpreter."""
import base64

import pytest

from bitcoin.bip32 import HARDENED, ExtendedPrivateKey, parse_path
from bitcoin.hashes import hash160
from bitcoin.psbt import (
    PSBT,
    KeyOrigin,
    PsbtDuplicateKeyError,
    PsbtError,
    PsbtExtractError,
    PsbtFinalizeError,
    PsbtFormatError,
    PsbtInput,
    PsbtKeyLengthError,
    PsbtValueError,
    PsbtVersionError,
    TapKeyOrigin,
)
from bitcoin.script import p2sh_script, p2wpkh_script
from bitcoin.serialize import ser_bytes
from bitcoin.taproot import SIGHASH_DEFAULT, taproot_output_script
from bitcoin.tx import SIGHASH_ALL, SIGHASH_SINGLE, OutPoint, Tx, TxIn, TxOut

# --- BIP174 "The following are invalid PSBTs" (base64), with the error each must raise ---
INVALID = [
    ("Network transaction, not PSBT format", PsbtFormatError, "magic",
     "AgAAAAEmgXE3Ht/yhek3re6ks3t4AAwFZsuzrWRkFxPKQhcb9gAAAABqRzBEAiBwsiRRI+a/R01gxbUMBD1MaRpdJDXwmjSnZiqdwlF5CgIgATKcqdrPKAvfMHQOwDkEIkIsgctFg5RXrrdvwS7dlbMBIQJlfRGNM1e44PTCzUbbezn22cONmnCry5st5dyNv+TOMf7///8C09/1BQAAAAAZdqkU0MWZA8W6woaHYOkP1SGkZlqnZSCIrADh9QUAAAAAF6kUNUXm4zuDLEcFDyTT7rk8nAOUi8eHsy4TAA=="),
    ("PSBT missing outputs", PsbtFormatError, "output 0: missing output map",
     "cHNidP8BAHUCAAAAASaBcTce3/KF6Tet7qSze3gADAVmy7OtZGQXE8pCFxv2AAAAAAD+////AtPf9QUAAAAAGXapFNDFmQPFusKGh2DpD9UhpGZap2UgiKwA4fUFAAAAABepFDVF5uM7gyxHBQ8k0+65PJwDlIvHh7MuEwAAAQD9pQEBAAAAAAECiaPHHqtNIOA3G7ukzGmPopXJRjr6Ljl/hTPMti+VZ+UBAAAAFxYAFL4Y0VKpsBIDna89p95PUzSe7LmF/////4b4qkOnHf8USIk6UwpyN+9rRgi7st0tAXHmOuxqSJC0AQAAABcWABT+Pp7xp0XpdNkCxDVZQ6vLNL1TU/////8CAMLrCwAAAAAZdqkUhc/xCX/Z4Ai7NK9wnGIZeziXikiIrHL++E4sAAAAF6kUM5cluiHv1irHU6m80GfWx6ajnQWHAkcwRAIgJxK+IuAnDzlPVoMR3HyppolwuAJf3TskAinwf4pfOiQCIAGLONfc0xTnNMkna9b7QPZzMlvEuqFEyADS8vAtsnZcASED0uFWdJQbrUqZY3LLh+GFbTZSYG2YVi/jnF6efkE/IQUCSDBFAiEA0SuFLYXc2WHS9fSrZgZU327tzHlMDDPOXMMJ/7X85Y0CIGczio4OFyXBl/saiK9Z9R5E5CVbIBZ8hoQDHAXR8lkqASECI7cr7vCWXRC+B3jv7NYfysb3mk6haTkzgHNEZPhPKrMAAAAAAA=="),
    ("PSBT where one input has a filled scriptSig in the unsigned tx", PsbtFormatError, "non-empty scriptSig",
     "cHNidP8BAP0KAQIAAAACqwlJoIxa98SbghL0F+LxWrP1wz3PFTghqBOfh3pbe+QAAAAAakcwRAIgR1lmF5fAGwNrJZKJSGhiGDR9iYZLcZ4ff89X0eURZYcCIFMJ6r9Wqk2Ikf/REf3xM286KdqGbX+EhtdVRs7tr5MZASEDXNxh/HupccC1AaZGoqg7ECy0OIEhfKaC3Ibi1z+ogpL+////qwlJoIxa98SbghL0F+LxWrP1wz3PFTghqBOfh3pbe+QBAAAAAP7///8CYDvqCwAAAAAZdqkUdopAu9dAy+gdmI5x3ipNXHE5ax2IrI4kAAAAAAAAGXapFG9GILVT+glechue4O/p+gOcykWXiKwAAAAAAAABASAA4fUFAAAAABepFDVF5uM7gyxHBQ8k0+65PJwDlIvHhwEEFgAUhdE1N/LiZUBaNNuvqePdoB+4IwgAAAA="),
    ("PSBT where inputs and outputs are provided but without an unsigned tx", PsbtFormatError, "no unsigned transaction",
     "cHNidP8AAQD9pQEBAAAAAAECiaPHHqtNIOA3G7ukzGmPopXJRjr6Ljl/hTPMti+VZ+UBAAAAFxYAFL4Y0VKpsBIDna89p95PUzSe7LmF/////4b4qkOnHf8USIk6UwpyN+9rRgi7st0tAXHmOuxqSJC0AQAAABcWABT+Pp7xp0XpdNkCxDVZQ6vLNL1TU/////8CAMLrCwAAAAAZdqkUhc/xCX/Z4Ai7NK9wnGIZeziXikiIrHL++E4sAAAAF6kUM5cluiHv1irHU6m80GfWx6ajnQWHAkcwRAIgJxK+IuAnDzlPVoMR3HyppolwuAJf3TskAinwf4pfOiQCIAGLONfc0xTnNMkna9b7QPZzMlvEuqFEyADS8vAtsnZcASED0uFWdJQbrUqZY3LLh+GFbTZSYG2YVi/jnF6efkE/IQUCSDBFAiEA0SuFLYXc2WHS9fSrZgZU327tzHlMDDPOXMMJ/7X85Y0CIGczio4OFyXBl/saiK9Z9R5E5CVbIBZ8hoQDHAXR8lkqASECI7cr7vCWXRC+B3jv7NYfysb3mk6haTkzgHNEZPhPKrMAAAAAAA=="),
    ("PSBT with duplicate keys in an input", PsbtDuplicateKeyError, "input 0: duplicate key 00",
     "cHNidP8BAHUCAAAAASaBcTce3/KF6Tet7qSze3gADAVmy7OtZGQXE8pCFxv2AAAAAAD+////AtPf9QUAAAAAGXapFNDFmQPFusKGh2DpD9UhpGZap2UgiKwA4fUFAAAAABepFDVF5uM7gyxHBQ8k0+65PJwDlIvHh7MuEwAAAQD9pQEBAAAAAAECiaPHHqtNIOA3G7ukzGmPopXJRjr6Ljl/hTPMti+VZ+UBAAAAFxYAFL4Y0VKpsBIDna89p95PUzSe7LmF/////4b4qkOnHf8USIk6UwpyN+9rRgi7st0tAXHmOuxqSJC0AQAAABcWABT+Pp7xp0XpdNkCxDVZQ6vLNL1TU/////8CAMLrCwAAAAAZdqkUhc/xCX/Z4Ai7NK9wnGIZeziXikiIrHL++E4sAAAAF6kUM5cluiHv1irHU6m80GfWx6ajnQWHAkcwRAIgJxK+IuAnDzlPVoMR3HyppolwuAJf3TskAinwf4pfOiQCIAGLONfc0xTnNMkna9b7QPZzMlvEuqFEyADS8vAtsnZcASED0uFWdJQbrUqZY3LLh+GFbTZSYG2YVi/jnF6efkE/IQUCSDBFAiEA0SuFLYXc2WHS9fSrZgZU327tzHlMDDPOXMMJ/7X85Y0CIGczio4OFyXBl/saiK9Z9R5E5CVbIBZ8hoQDHAXR8lkqASECI7cr7vCWXRC+B3jv7NYfysb3mk6haTkzgHNEZPhPKrMAAAAAAQA/AgAAAAH//////////////////////////////////////////wAAAAAA/////wEAAAAAAAAAAANqAQAAAAAAAAAA"),
    ("PSBT with invalid global transaction typed key", PsbtKeyLengthError, "global: unsigned tx",
     "cHNidP8CAAFVAgAAAAEnmiMjpd+1H8RfIg+liw/BPh4zQnkqhdfjbNYzO1y8OQAAAAAA/////wGgWuoLAAAAABl2qRT/6cAGEJfMO2NvLLBGD6T8Qn0rRYisAAAAAAABASCVXuoLAAAAABepFGNFIA9o0YnhrcDfHE0W6o8UwNvrhyICA7E0HMunaDtq9PEjjNbpfnFn1Wn6xH8eSNR1QYRDVb1GRjBDAiAEJLWO/6qmlOFVnqXJO7/UqJBkIkBVzfBwtncUaUQtBwIfXI6w/qZRbWC4rLM61k7eYOh4W/s6qUuZvfhhUduamgEBBCIAIHcf0YrUWWZt1J89Vk49vEL0yEd042CtoWgWqO1IjVaBAQVHUiEDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUYhA95V0eHayAXj+KWMH7+blMAvPbqv4Sf+/KSZXyb4IIO9Uq4iBgOxNBzLp2g7avTxI4zW6X5xZ9Vp+sR/HkjUdUGEQ1W9RhC0prpnAAAAgAAAAIAEAACAIgYD3lXR4drIBeP4pYwfv5uUwC89uq/hJ/78pJlfJvggg70QtKa6ZwAAAIAAAACABQAAgAAA"),
    ("PSBT with invalid input witness utxo typed key", PsbtKeyLengthError, "input 0: witness utxo",
     "cHNidP8BAFUCAAAAASeaIyOl37UfxF8iD6WLD8E+HjNCeSqF1+Ns1jM7XLw5AAAAAAD/////AaBa6gsAAAAAGXapFP/pwAYQl8w7Y28ssEYPpPxCfStFiKwAAAAAAAIBACCVXuoLAAAAABepFGNFIA9o0YnhrcDfHE0W6o8UwNvrhyICA7E0HMunaDtq9PEjjNbpfnFn1Wn6xH8eSNR1QYRDVb1GRjBDAiAEJLWO/6qmlOFVnqXJO7/UqJBkIkBVzfBwtncUaUQtBwIfXI6w/qZRbWC4rLM61k7eYOh4W/s6qUuZvfhhUduamgEBBCIAIHcf0YrUWWZt1J89Vk49vEL0yEd042CtoWgWqO1IjVaBAQVHUiEDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUYhA95V0eHayAXj+KWMH7+blMAvPbqv4Sf+/KSZXyb4IIO9Uq4iBgOxNBzLp2g7avTxI4zW6X5xZ9Vp+sR/HkjUdUGEQ1W9RhC0prpnAAAAgAAAAIAEAACAIgYD3lXR4drIBeP4pYwfv5uUwC89uq/hJ/78pJlfJvggg70QtKa6ZwAAAIAAAACABQAAgAAA"),
    ("PSBT with invalid pubkey length for input partial signature typed key", PsbtKeyLengthError,
     "input 0: partial signature",
     "cHNidP8BAFUCAAAAASeaIyOl37UfxF8iD6WLD8E+HjNCeSqF1+Ns1jM7XLw5AAAAAAD/////AaBa6gsAAAAAGXapFP/pwAYQl8w7Y28ssEYPpPxCfStFiKwAAAAAAAEBIJVe6gsAAAAAF6kUY0UgD2jRieGtwN8cTRbqjxTA2+uHIQIDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUYwQwIgBCS1jv+qppThVZ6lyTu/1KiQZCJAVc3wcLZ3FGlELQcCH1yOsP6mUW1guKyzOtZO3mDoeFv7OqlLmb34YVHbmpoBAQQiACB3H9GK1FlmbdSfPVZOPbxC9MhHdONgraFoFqjtSI1WgQEFR1IhA7E0HMunaDtq9PEjjNbpfnFn1Wn6xH8eSNR1QYRDVb1GIQPeVdHh2sgF4/iljB+/m5TALz26r+En/vykmV8m+CCDvVKuIgYDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUYQtKa6ZwAAAIAAAACABAAAgCIGA95V0eHayAXj+KWMH7+blMAvPbqv4Sf+/KSZXyb4IIO9ELSmumcAAACAAAAAgAUAAIAAAA=="),
    ("PSBT with invalid redeemscript typed key", PsbtKeyLengthError, "input 0: redeemScript",
     "cHNidP8BAFUCAAAAASeaIyOl37UfxF8iD6WLD8E+HjNCeSqF1+Ns1jM7XLw5AAAAAAD/////AaBa6gsAAAAAGXapFP/pwAYQl8w7Y28ssEYPpPxCfStFiKwAAAAAAAEBIJVe6gsAAAAAF6kUY0UgD2jRieGtwN8cTRbqjxTA2+uHIgIDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUZGMEMCIAQktY7/qqaU4VWepck7v9SokGQiQFXN8HC2dxRpRC0HAh9cjrD+plFtYLisszrWTt5g6Hhb+zqpS5m9+GFR25qaAQIEACIAIHcf0YrUWWZt1J89Vk49vEL0yEd042CtoWgWqO1IjVaBAQVHUiEDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUYhA95V0eHayAXj+KWMH7+blMAvPbqv4Sf+/KSZXyb4IIO9Uq4iBgOxNBzLp2g7avTxI4zW6X5xZ9Vp+sR/HkjUdUGEQ1W9RhC0prpnAAAAgAAAAIAEAACAIgYD3lXR4drIBeP4pYwfv5uUwC89uq/hJ/78pJlfJvggg70QtKa6ZwAAAIAAAACABQAAgAAA"),
    ("PSBT with invalid witnessscript typed key", PsbtKeyLengthError, "input 0: witnessScript",
     "cHNidP8BAFUCAAAAASeaIyOl37UfxF8iD6WLD8E+HjNCeSqF1+Ns1jM7XLw5AAAAAAD/////AaBa6gsAAAAAGXapFP/pwAYQl8w7Y28ssEYPpPxCfStFiKwAAAAAAAEBIJVe6gsAAAAAF6kUY0UgD2jRieGtwN8cTRbqjxTA2+uHIgIDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUZGMEMCIAQktY7/qqaU4VWepck7v9SokGQiQFXN8HC2dxRpRC0HAh9cjrD+plFtYLisszrWTt5g6Hhb+zqpS5m9+GFR25qaAQEEIgAgdx/RitRZZm3Unz1WTj28QvTIR3TjYK2haBao7UiNVoECBQBHUiEDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUYhA95V0eHayAXj+KWMH7+blMAvPbqv4Sf+/KSZXyb4IIO9Uq4iBgOxNBzLp2g7avTxI4zW6X5xZ9Vp+sR/HkjUdUGEQ1W9RhC0prpnAAAAgAAAAIAEAACAIgYD3lXR4drIBeP4pYwfv5uUwC89uq/hJ/78pJlfJvggg70QtKa6ZwAAAIAAAACABQAAgAAA"),
    ("PSBT with invalid pubkey in input BIP 32 derivation paths typed key", PsbtKeyLengthError,
     "input 0: BIP32 derivation",
     "cHNidP8BAFUCAAAAASeaIyOl37UfxF8iD6WLD8E+HjNCeSqF1+Ns1jM7XLw5AAAAAAD/////AaBa6gsAAAAAGXapFP/pwAYQl8w7Y28ssEYPpPxCfStFiKwAAAAAAAEBIJVe6gsAAAAAF6kUY0UgD2jRieGtwN8cTRbqjxTA2+uHIgIDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUZGMEMCIAQktY7/qqaU4VWepck7v9SokGQiQFXN8HC2dxRpRC0HAh9cjrD+plFtYLisszrWTt5g6Hhb+zqpS5m9+GFR25qaAQEEIgAgdx/RitRZZm3Unz1WTj28QvTIR3TjYK2haBao7UiNVoEBBUdSIQOxNBzLp2g7avTxI4zW6X5xZ9Vp+sR/HkjUdUGEQ1W9RiED3lXR4drIBeP4pYwfv5uUwC89uq/hJ/78pJlfJvggg71SriEGA7E0HMunaDtq9PEjjNbpfnFn1Wn6xH8eSNR1QYRDVb0QtKa6ZwAAAIAAAACABAAAgCIGA95V0eHayAXj+KWMH7+blMAvPbqv4Sf+/KSZXyb4IIO9ELSmumcAAACAAAAAgAUAAIAAAA=="),
    ("PSBT with invalid non-witness utxo typed key", PsbtKeyLengthError, "input 0: non-witness utxo",
     "cHNidP8BAJoCAAAAAljoeiG1ba8MI76OcHBFbDNvfLqlyHV5JPVFiHuyq911AAAAAAD/////g40EJ9DsZQpoqka7CwmK6kQiwHGyyng1Kgd5WdB86h0BAAAAAP////8CcKrwCAAAAAAWABTYXCtx0AYLCcmIauuBXlCZHdoSTQDh9QUAAAAAFgAUAK6pouXw+HaliN9VRuh0LR2HAI8AAAAAAAIAALsCAAAAAarXOTEBi9JfhK5AC2iEi+CdtwbqwqwYKYur7nGrZW+LAAAAAEhHMEQCIFj2/HxqM+GzFUjUgcgmwBW9MBNarULNZ3kNq2bSrSQ7AiBKHO0mBMZzW2OT5bQWkd14sA8MWUL7n3UYVvqpOBV9ugH+////AoDw+gIAAAAAF6kUD7lGNCFpa4LIM68kHHjBfdveSTSH0PIKJwEAAAAXqRQpynT4oI+BmZQoGFyXtdhS5AY/YYdlAAAAAQfaAEcwRAIgdAGK1BgAl7hzMjwAFXILNoTMgSOJEEjn282bVa1nnJkCIHPTabdA4+tT3O+jOCPIBwUUylWn3ZVE8VfBZ5EyYRGMAUgwRQIhAPYQOLMI3B2oZaNIUnRvAVdyk0IIxtJEVDk82ZvfIhd3AiAFbmdaZ1ptCgK4WxTl4pB02KJam1dgvqKBb2YZEKAG6gFHUiEClYO/Oa4KYJdHrRma3dY0+mEIVZ1sXNObTCGD8auW4H8hAtq2H/SaFNtqfQKwzR+7ePxLGDErW05U2uTbovv+9TbXUq4AAQEgAMLrCwAAAAAXqRS39fr0Dj1ApaRZsds1NfK3L6kh6IcBByMiACCMI1MXN0O1ld+0oHtyuo5C43l9p06H/n2ddJfjsgKJAwEI2gQARzBEAiBi63pVYQenxz9FrEq1od3fb3B1+xJ1lpp/OD7/94S8sgIgDAXbt0cNvy8IVX3TVscyXB7TCRPpls04QJRdsSIo2l8BRzBEAiBl9FulmYtZon/+GnvtAWrx8fkNVLOqj3RQql9WolEDvQIgf3JHA60e25ZoCyhLVtT/y4j3+3Weq74IqjDym4UTg9IBR1IhAwidwQx6xttU+RMpr2FzM9s4jOrQwjH3IzedG5kDCwLcIQI63ZBPPW3PWd25BrDe4jUpt/+57VDl6GFRkmhgIh8Oc1KuACICA6mkw39ZltOqJdusa1cK8GUDlEkpQkYLNUdT7Z7spYdxENkMak8AAACAAAAAgAQAAIAAIgICf2OZdX0u/1WhNq0CxoSxg4tlVuXxtrNCgqlLa1AFEJYQ2QxqTwAAAIAAAACABQAAgAA="),
    ("PSBT with invalid final scriptsig typed key", PsbtKeyLengthError, "input 0: final scriptSig",
     "cHNidP8BAJoCAAAAAljoeiG1ba8MI76OcHBFbDNvfLqlyHV5JPVFiHuyq911AAAAAAD/////g40EJ9DsZQpoqka7CwmK6kQiwHGyyng1Kgd5WdB86h0BAAAAAP////8CcKrwCAAAAAAWABTYXCtx0AYLCcmIauuBXlCZHdoSTQDh9QUAAAAAFgAUAK6pouXw+HaliN9VRuh0LR2HAI8AAAAAAAEAuwIAAAABqtc5MQGL0l+ErkALaISL4J23BurCrBgpi6vucatlb4sAAAAASEcwRAIgWPb8fGoz4bMVSNSByCbAFb0wE1qtQs1neQ2rZtKtJDsCIEoc7SYExnNbY5PltBaR3XiwDwxZQvufdRhW+qk4FX26Af7///8CgPD6AgAAAAAXqRQPuUY0IWlrgsgzryQceMF9295JNIfQ8gonAQAAABepFCnKdPigj4GZlCgYXJe12FLkBj9hh2UAAAACBwDaAEcwRAIgdAGK1BgAl7hzMjwAFXILNoTMgSOJEEjn282bVa1nnJkCIHPTabdA4+tT3O+jOCPIBwUUylWn3ZVE8VfBZ5EyYRGMAUgwRQIhAPYQOLMI3B2oZaNIUnRvAVdyk0IIxtJEVDk82ZvfIhd3AiAFbmdaZ1ptCgK4WxTl4pB02KJam1dgvqKBb2YZEKAG6gFHUiEClYO/Oa4KYJdHrRma3dY0+mEIVZ1sXNObTCGD8auW4H8hAtq2H/SaFNtqfQKwzR+7ePxLGDErW05U2uTbovv+9TbXUq4AAQEgAMLrCwAAAAAXqRS39fr0Dj1ApaRZsds1NfK3L6kh6IcBByMiACCMI1MXN0O1ld+0oHtyuo5C43l9p06H/n2ddJfjsgKJAwEI2gQARzBEAiBi63pVYQenxz9FrEq1od3fb3B1+xJ1lpp/OD7/94S8sgIgDAXbt0cNvy8IVX3TVscyXB7TCRPpls04QJRdsSIo2l8BRzBEAiBl9FulmYtZon/+GnvtAWrx8fkNVLOqj3RQql9WolEDvQIgf3JHA60e25ZoCyhLVtT/y4j3+3Weq74IqjDym4UTg9IBR1IhAwidwQx6xttU+RMpr2FzM9s4jOrQwjH3IzedG5kDCwLcIQI63ZBPPW3PWd25BrDe4jUpt/+57VDl6GFRkmhgIh8Oc1KuACICA6mkw39ZltOqJdusa1cK8GUDlEkpQkYLNUdT7Z7spYdxENkMak8AAACAAAAAgAQAAIAAIgICf2OZdX0u/1WhNq0CxoSxg4tlVuXxtrNCgqlLa1AFEJYQ2QxqTwAAAIAAAACABQAAgAA="),
    ("PSBT with invalid final script witness typed key", PsbtKeyLengthError, "input 1: final scriptWitness",
     "cHNidP8BAJoCAAAAAljoeiG1ba8MI76OcHBFbDNvfLqlyHV5JPVFiHuyq911AAAAAAD/////g40EJ9DsZQpoqka7CwmK6kQiwHGyyng1Kgd5WdB86h0BAAAAAP////8CcKrwCAAAAAAWABTYXCtx0AYLCcmIauuBXlCZHdoSTQDh9QUAAAAAFgAUAK6pouXw+HaliN9VRuh0LR2HAI8AAAAAAAEAuwIAAAABqtc5MQGL0l+ErkALaISL4J23BurCrBgpi6vucatlb4sAAAAASEcwRAIgWPb8fGoz4bMVSNSByCbAFb0wE1qtQs1neQ2rZtKtJDsCIEoc7SYExnNbY5PltBaR3XiwDwxZQvufdRhW+qk4FX26Af7///8CgPD6AgAAAAAXqRQPuUY0IWlrgsgzryQceMF9295JNIfQ8gonAQAAABepFCnKdPigj4GZlCgYXJe12FLkBj9hh2UAAAABB9oARzBEAiB0AYrUGACXuHMyPAAVcgs2hMyBI4kQSOfbzZtVrWecmQIgc9Npt0Dj61Pc76M4I8gHBRTKVafdlUTxV8FnkTJhEYwBSDBFAiEA9hA4swjcHahlo0hSdG8BV3KTQgjG0kRUOTzZm98iF3cCIAVuZ1pnWm0KArhbFOXikHTYolqbV2C+ooFvZhkQoAbqAUdSIQKVg785rgpgl0etGZrd1jT6YQhVnWxc05tMIYPxq5bgfyEC2rYf9JoU22p9ArDNH7t4/EsYMStbTlTa5Nui+/71NtdSrgABASAAwusLAAAAABepFLf1+vQOPUClpFmx2zU18rcvqSHohwEHIyIAIIwjUxc3Q7WV37Sge3K6jkLjeX2nTof+fZ10l+OyAokDAggA2gQARzBEAiBi63pVYQenxz9FrEq1od3fb3B1+xJ1lpp/OD7/94S8sgIgDAXbt0cNvy8IVX3TVscyXB7TCRPpls04QJRdsSIo2l8BRzBEAiBl9FulmYtZon/+GnvtAWrx8fkNVLOqj3RQql9WolEDvQIgf3JHA60e25ZoCyhLVtT/y4j3+3Weq74IqjDym4UTg9IBR1IhAwidwQx6xttU+RMpr2FzM9s4jOrQwjH3IzedG5kDCwLcIQI63ZBPPW3PWd25BrDe4jUpt/+57VDl6GFRkmhgIh8Oc1KuACICA6mkw39ZltOqJdusa1cK8GUDlEkpQkYLNUdT7Z7spYdxENkMak8AAACAAAAAgAQAAIAAIgICf2OZdX0u/1WhNq0CxoSxg4tlVuXxtrNCgqlLa1AFEJYQ2QxqTwAAAIAAAACABQAAgAA="),
    ("PSBT with invalid pubkey in output BIP 32 derivation paths typed key", PsbtKeyLengthError,
     "output 0: BIP32 derivation",
     "cHNidP8BAJoCAAAAAljoeiG1ba8MI76OcHBFbDNvfLqlyHV5JPVFiHuyq911AAAAAAD/////g40EJ9DsZQpoqka7CwmK6kQiwHGyyng1Kgd5WdB86h0BAAAAAP////8CcKrwCAAAAAAWABTYXCtx0AYLCcmIauuBXlCZHdoSTQDh9QUAAAAAFgAUAK6pouXw+HaliN9VRuh0LR2HAI8AAAAAAAEAuwIAAAABqtc5MQGL0l+ErkALaISL4J23BurCrBgpi6vucatlb4sAAAAASEcwRAIgWPb8fGoz4bMVSNSByCbAFb0wE1qtQs1neQ2rZtKtJDsCIEoc7SYExnNbY5PltBaR3XiwDwxZQvufdRhW+qk4FX26Af7///8CgPD6AgAAAAAXqRQPuUY0IWlrgsgzryQceMF9295JNIfQ8gonAQAAABepFCnKdPigj4GZlCgYXJe12FLkBj9hh2UAAAABB9oARzBEAiB0AYrUGACXuHMyPAAVcgs2hMyBI4kQSOfbzZtVrWecmQIgc9Npt0Dj61Pc76M4I8gHBRTKVafdlUTxV8FnkTJhEYwBSDBFAiEA9hA4swjcHahlo0hSdG8BV3KTQgjG0kRUOTzZm98iF3cCIAVuZ1pnWm0KArhbFOXikHTYolqbV2C+ooFvZhkQoAbqAUdSIQKVg785rgpgl0etGZrd1jT6YQhVnWxc05tMIYPxq5bgfyEC2rYf9JoU22p9ArDNH7t4/EsYMStbTlTa5Nui+/71NtdSrgABASAAwusLAAAAABepFLf1+vQOPUClpFmx2zU18rcvqSHohwEHIyIAIIwjUxc3Q7WV37Sge3K6jkLjeX2nTof+fZ10l+OyAokDAQjaBABHMEQCIGLrelVhB6fHP0WsSrWh3d9vcHX7EnWWmn84Pv/3hLyyAiAMBdu3Rw2/LwhVfdNWxzJcHtMJE+mWzThAlF2xIijaXwFHMEQCIGX0W6WZi1mif/4ae+0BavHx+Q1Us6qPdFCqX1aiUQO9AiB/ckcDrR7blmgLKEtW1P/LiPf7dZ6rvgiqMPKbhROD0gFHUiEDCJ3BDHrG21T5EymvYXMz2ziM6tDCMfcjN50bmQMLAtwhAjrdkE89bc9Z3bkGsN7iNSm3/7ntUOXoYVGSaGAiHw5zUq4AIQIDqaTDf1mW06ol26xrVwrwZQOUSSlCRgs1R1PtnuylhxDZDGpPAAAAgAAAAIAEAACAACICAn9jmXV9Lv9VoTatAsaEsYOLZVbl8bazQoKpS2tQBRCWENkMak8AAACAAAAAgAUAAIAA"),
    ("PSBT with invalid input sighash type typed key", PsbtKeyLengthError, "input 0: sighash type",
     "cHNidP8BAHMCAAAAATAa6YblFqHsisW0vGVz0y+DtGXiOtdhZ9aLOOcwtNvbAAAAAAD/////AnR7AQAAAAAAF6kUA6oXrogrXQ1Usl1jEE5P/s57nqKHYEOZOwAAAAAXqRS5IbG6b3IuS/qDtlV6MTmYakLsg4cAAAAAAAEBHwDKmjsAAAAAFgAU0tlLZK4IWH7vyO6xh8YB6Tn5A3wCAwABAAAAAAEAFgAUYunpgv/zTdgjlhAxawkM0qO3R8sAAQAiACCHa62DLx0WgBXtQSMqnqZaGBXZ7xPA74dZ9ktbKyeKZQEBJVEhA7fOI6AcW0vwCmQlN836uzFbZoMyhnR471EwnSvVf4qHUa4A"),
    ("PSBT with invalid output redeemScript typed key", PsbtKeyLengthError, "output 0: redeemScript",
     "cHNidP8BAHMCAAAAATAa6YblFqHsisW0vGVz0y+DtGXiOtdhZ9aLOOcwtNvbAAAAAAD/////AnR7AQAAAAAAF6kUA6oXrogrXQ1Usl1jEE5P/s57nqKHYEOZOwAAAAAXqRS5IbG6b3IuS/qDtlV6MTmYakLsg4cAAAAAAAEBHwDKmjsAAAAAFgAU0tlLZK4IWH7vyO6xh8YB6Tn5A3wAAgAAFgAUYunpgv/zTdgjlhAxawkM0qO3R8sAAQAiACCHa62DLx0WgBXtQSMqnqZaGBXZ7xPA74dZ9ktbKyeKZQEBJVEhA7fOI6AcW0vwCmQlN836uzFbZoMyhnR471EwnSvVf4qHUa4A"),
    ("PSBT with invalid output witnessScript typed key", PsbtKeyLengthError, "output 1: witnessScript",
     "cHNidP8BAHMCAAAAATAa6YblFqHsisW0vGVz0y+DtGXiOtdhZ9aLOOcwtNvbAAAAAAD/////AnR7AQAAAAAAF6kUA6oXrogrXQ1Usl1jEE5P/s57nqKHYEOZOwAAAAAXqRS5IbG6b3IuS/qDtlV6MTmYakLsg4cAAAAAAAEBHwDKmjsAAAAAFgAU0tlLZK4IWH7vyO6xh8YB6Tn5A3wAAQAWABRi6emC//NN2COWEDFrCQzSo7dHywABACIAIIdrrYMvHRaAFe1BIyqeploYFdnvE8Dvh1n2S1srJ4plIQEAJVEhA7fOI6AcW0vwCmQlN836uzFbZoMyhnR471EwnQbVf4qHUa4A"),
    ("PSBT with unsigned tx serialized with witness serialization format", PsbtFormatError, "unsigned transaction",
     "cHNidP8BAHgCAAAAAAEBJoFxNx7f8oXpN63upLN7eAAMBWbLs61kZBcTykIXG/YAAAAAAP7///8C09/1BQAAAAAZdqkU0MWZA8W6woaHYOkP1SGkZlqnZSCIrADh9QUAAAAAF6kUNUXm4zuDLEcFDyTT7rk8nAOUi8eHALMuEwAAAQD9pQEBAAAAAAECiaPHHqtNIOA3G7ukzGmPopXJRjr6Ljl/hTPMti+VZ+UBAAAAFxYAFL4Y0VKpsBIDna89p95PUzSe7LmF/////4b4qkOnHf8USIk6UwpyN+9rRgi7st0tAXHmOuxqSJC0AQAAABcWABT+Pp7xp0XpdNkCxDVZQ6vLNL1TU/////8CAMLrCwAAAAAZdqkUhc/xCX/Z4Ai7NK9wnGIZeziXikiIrHL++E4sAAAAF6kUM5cluiHv1irHU6m80GfWx6ajnQWHAkcwRAIgJxK+IuAnDzlPVoMR3HyppolwuAJf3TskAinwf4pfOiQCIAGLONfc0xTnNMkna9b7QPZzMlvEuqFEyADS8vAtsnZcASED0uFWdJQbrUqZY3LLh+GFbTZSYG2YVi/jnF6efkE/IQUCSDBFAiEA0SuFLYXc2WHS9fSrZgZU327tzHlMDDPOXMMJ/7X85Y0CIGczio4OFyXBl/saiK9Z9R5E5CVbIBZ8hoQDHAXR8lkqASECI7cr7vCWXRC+B3jv7NYfysb3mk6haTkzgHNEZPhPKrMAAAAAAAAA"),
]

# --- BIP174 "The following are valid PSBTs" ---
VALID = [
    ("PSBT with one P2PKH input. Outputs are empty",
     "cHNidP8BAHUCAAAAASaBcTce3/KF6Tet7qSze3gADAVmy7OtZGQXE8pCFxv2AAAAAAD+////AtPf9QUAAAAAGXapFNDFmQPFusKGh2DpD9UhpGZap2UgiKwA4fUFAAAAABepFDVF5uM7gyxHBQ8k0+65PJwDlIvHh7MuEwAAAQD9pQEBAAAAAAECiaPHHqtNIOA3G7ukzGmPopXJRjr6Ljl/hTPMti+VZ+UBAAAAFxYAFL4Y0VKpsBIDna89p95PUzSe7LmF/////4b4qkOnHf8USIk6UwpyN+9rRgi7st0tAXHmOuxqSJC0AQAAABcWABT+Pp7xp0XpdNkCxDVZQ6vLNL1TU/////8CAMLrCwAAAAAZdqkUhc/xCX/Z4Ai7NK9wnGIZeziXikiIrHL++E4sAAAAF6kUM5cluiHv1irHU6m80GfWx6ajnQWHAkcwRAIgJxK+IuAnDzlPVoMR3HyppolwuAJf3TskAinwf4pfOiQCIAGLONfc0xTnNMkna9b7QPZzMlvEuqFEyADS8vAtsnZcASED0uFWdJQbrUqZY3LLh+GFbTZSYG2YVi/jnF6efkE/IQUCSDBFAiEA0SuFLYXc2WHS9fSrZgZU327tzHlMDDPOXMMJ/7X85Y0CIGczio4OFyXBl/saiK9Z9R5E5CVbIBZ8hoQDHAXR8lkqASECI7cr7vCWXRC+B3jv7NYfysb3mk6haTkzgHNEZPhPKrMAAAAAAAAA"),
    ("PSBT with one P2PKH input and one P2SH-P2WPKH input. First input is signed and finalized",
     "cHNidP8BAKACAAAAAqsJSaCMWvfEm4IS9Bfi8Vqz9cM9zxU4IagTn4d6W3vkAAAAAAD+////qwlJoIxa98SbghL0F+LxWrP1wz3PFTghqBOfh3pbe+QBAAAAAP7///8CYDvqCwAAAAAZdqkUdopAu9dAy+gdmI5x3ipNXHE5ax2IrI4kAAAAAAAAGXapFG9GILVT+glechue4O/p+gOcykWXiKwAAAAAAAEHakcwRAIgR1lmF5fAGwNrJZKJSGhiGDR9iYZLcZ4ff89X0eURZYcCIFMJ6r9Wqk2Ikf/REf3xM286KdqGbX+EhtdVRs7tr5MZASEDXNxh/HupccC1AaZGoqg7ECy0OIEhfKaC3Ibi1z+ogpIAAQEgAOH1BQAAAAAXqRQ1RebjO4MsRwUPJNPuuTycA5SLx4cBBBYAFIXRNTfy4mVAWjTbr6nj3aAfuCMIAAAA"),
    ("PSBT with one P2PKH input which has a non-final scriptSig and has a sighash type specified",
     "cHNidP8BAHUCAAAAASaBcTce3/KF6Tet7qSze3gADAVmy7OtZGQXE8pCFxv2AAAAAAD+////AtPf9QUAAAAAGXapFNDFmQPFusKGh2DpD9UhpGZap2UgiKwA4fUFAAAAABepFDVF5uM7gyxHBQ8k0+65PJwDlIvHh7MuEwAAAQD9pQEBAAAAAAECiaPHHqtNIOA3G7ukzGmPopXJRjr6Ljl/hTPMti+VZ+UBAAAAFxYAFL4Y0VKpsBIDna89p95PUzSe7LmF/////4b4qkOnHf8USIk6UwpyN+9rRgi7st0tAXHmOuxqSJC0AQAAABcWABT+Pp7xp0XpdNkCxDVZQ6vLNL1TU/////8CAMLrCwAAAAAZdqkUhc/xCX/Z4Ai7NK9wnGIZeziXikiIrHL++E4sAAAAF6kUM5cluiHv1irHU6m80GfWx6ajnQWHAkcwRAIgJxK+IuAnDzlPVoMR3HyppolwuAJf3TskAinwf4pfOiQCIAGLONfc0xTnNMkna9b7QPZzMlvEuqFEyADS8vAtsnZcASED0uFWdJQbrUqZY3LLh+GFbTZSYG2YVi/jnF6efkE/IQUCSDBFAiEA0SuFLYXc2WHS9fSrZgZU327tzHlMDDPOXMMJ/7X85Y0CIGczio4OFyXBl/saiK9Z9R5E5CVbIBZ8hoQDHAXR8lkqASECI7cr7vCWXRC+B3jv7NYfysb3mk6haTkzgHNEZPhPKrMAAAAAAQMEAQAAAAAAAA=="),
    ("PSBT with one P2PKH input and one P2SH-P2WPKH input both with non-final scriptSigs. Outputs filled",
     "cHNidP8BAKACAAAAAqsJSaCMWvfEm4IS9Bfi8Vqz9cM9zxU4IagTn4d6W3vkAAAAAAD+////qwlJoIxa98SbghL0F+LxWrP1wz3PFTghqBOfh3pbe+QBAAAAAP7///8CYDvqCwAAAAAZdqkUdopAu9dAy+gdmI5x3ipNXHE5ax2IrI4kAAAAAAAAGXapFG9GILVT+glechue4O/p+gOcykWXiKwAAAAAAAEA3wIAAAABJoFxNx7f8oXpN63upLN7eAAMBWbLs61kZBcTykIXG/YAAAAAakcwRAIgcLIkUSPmv0dNYMW1DAQ9TGkaXSQ18Jo0p2YqncJReQoCIAEynKnazygL3zB0DsA5BCJCLIHLRYOUV663b8Eu3ZWzASECZX0RjTNXuOD0ws1G23s59tnDjZpwq8ubLeXcjb/kzjH+////AtPf9QUAAAAAGXapFNDFmQPFusKGh2DpD9UhpGZap2UgiKwA4fUFAAAAABepFDVF5uM7gyxHBQ8k0+65PJwDlIvHh7MuEwAAAQEgAOH1BQAAAAAXqRQ1RebjO4MsRwUPJNPuuTycA5SLx4cBBBYAFIXRNTfy4mVAWjTbr6nj3aAfuCMIACICAurVlmh8qAYEPtw94RbN8p1eklfBls0FXPaYyNAr8k6ZELSmumcAAACAAAAAgAIAAIAAIgIDlPYr6d8ZlSxVh3aK63aYBhrSxKJciU9H2MFitNchPQUQtKa6ZwAAAIABAACAAgAAgAA="),
    ("PSBT with one P2SH-P2WSH input of a 2-of-2 multisig. Contains one signature",
     "cHNidP8BAFUCAAAAASeaIyOl37UfxF8iD6WLD8E+HjNCeSqF1+Ns1jM7XLw5AAAAAAD/////AaBa6gsAAAAAGXapFP/pwAYQl8w7Y28ssEYPpPxCfStFiKwAAAAAAAEBIJVe6gsAAAAAF6kUY0UgD2jRieGtwN8cTRbqjxTA2+uHIgIDsTQcy6doO2r08SOM1ul+cWfVafrEfx5I1HVBhENVvUZGMEMCIAQktY7/qqaU4VWepck7v9SokGQiQFXN8HC2dxRpRC0HAh9cjrD+plFtYLisszrWTt5g6Hhb+zqpS5m9+GFR25qaAQEEIgAgdx/RitRZZm3Unz1WTj28QvTIR3TjYK2haBao7UiNVoEBBUdSIQOxNBzLp2g7avTxI4zW6X5xZ9Vp+sR/HkjUdUGEQ1W9RiED3lXR4drIBeP4pYwfv5uUwC89uq/hJ/78pJlfJvggg71SriIGA7E0HMunaDtq9PEjjNbpfnFn1Wn6xH8eSNR1QYRDVb1GELSmumcAAACAAAAAgAQAAIAiBgPeVdHh2sgF4/iljB+/m5TALz26r+En/vykmV8m+CCDvRC0prpnAAAAgAAAAIAFAACAAAA="),
    ("PSBT with one P2WSH input of a 2-of-2 multisig, keypaths and global xpubs. Outputs filled",
     "cHNidP8BAFICAAAAAZ38ZijCbFiZ/hvT3DOGZb/VXXraEPYiCXPfLTht7BJ2AQAAAAD/////AfA9zR0AAAAAFgAUezoAv9wU0neVwrdJAdCdpu8TNXkAAAAATwEENYfPAto/0AiAAAAAlwSLGtBEWx7IJ1UXcnyHtOTrwYogP/oPlMAVZr046QADUbdDiH7h1A3DKmBDck8tZFmztaTXPa7I+64EcvO8Q+IM2QxqT64AAIAAAACATwEENYfPAto/0AiAAAABuQRSQnE5zXjCz/JES+NTzVhgXj5RMoXlKLQH+uP2FzUD0wpel8itvFV9rCrZp+OcFyLrrGnmaLbyZnzB1nHIPKsM2QxqT64AAIABAACAAAEBKwBlzR0AAAAAIgAgLFSGEmxJeAeagU4TcV1l82RZ5NbMre0mbQUIZFuvpjIBBUdSIQKdoSzbWyNWkrkVNq/v5ckcOrlHPY5DtTODarRWKZyIcSEDNys0I07Xz5wf6l0F1EFVeSe+lUKxYusC4ass6AIkwAtSriIGAp2hLNtbI1aSuRU2r+/lyRw6uUc9jkO1M4NqtFYpnIhxENkMak+uAACAAAAAgAAAAAAiBgM3KzQjTtfPnB/qXQXUQVV5J76VQrFi6wLhqyzoAiTACxDZDGpPrgAAgAEAAIAAAAAAACICA57/H1R6HV+S36K6evaslxpL0DukpzSwMVaiVritOh75EO3kXMUAAACAAAAAgAEAAIAA"),
    ("PSBT with unknown types in the inputs",
     "cHNidP8BAD8CAAAAAf//////////////////////////////////////////AAAAAAD/////AQAAAAAAAAAAA2oBAAAAAAAACvABAgMEBQYHCAkPAQIDBAUGBwgJCgsMDQ4PAAA="),
    ("PSBT with PSBT_GLOBAL_XPUB",
     "cHNidP8BAJ0BAAAAAnEOp2q0XFy2Q45gflnMA3YmmBgFrp4N/ZCJASq7C+U1AQAAAAD/////GQmU1qizyMgsy8+y+6QQaqBmObhyqNRHRlwNQliNbWcAAAAAAP////8CAOH1BQAAAAAZdqkUtrwsDuVlWoQ9ea/t0MzD991kNAmIrGBa9AUAAAAAFgAUEYjvjkzgRJ6qyPsUHL9aEXbmoIgAAAAATwEEiLIeA55TDKyAAAAAPbyKXJdp8DGxfnf+oVGGAyIaGP0Y8rmlTGyMGsdcvDUC8jBYSxVdHH8c1FEgplPEjWULQxtnxbLBPyfXFCA3wWkQJ1acUDEAAIAAAACAAAAAgAABAR8A4fUFAAAAABYAFDO5gvkbKPFgySC0q5XljOUN2jpKIgIDMJaA8zx9446mpHzU7NZvH1pJdHxv+4gI7QkDkkPjrVxHMEQCIC1wTO2DDFapCTRL10K2hS3M0QPpY7rpLTjnUlTSu0JFAiAthsQ3GV30bAztoITyopHD2i1kBw92v5uQsZXn7yj3cgEiBgMwloDzPH3jjqakfNTs1m8fWkl0fG/7iAjtCQOSQ+OtXBgnVpxQMQAAgAAAAIAAAACAAAAAAAEAAAAAAQEfAOH1BQAAAAAWABQ4j7lEMH63fvRRl9CwskXgefAR3iICAsd3Fh9z0LfHK57nveZQKT0T8JW8dlatH1Jdpf0uELEQRzBEAiBMsftfhpyULg4mEAV2ElQ5F5rojcqKncO6CPeVOYj6pgIgUh9JynkcJ9cOJzybFGFphZCTYeJb4nTqIA1+CIJ+UU0BIgYCx3cWH3PQt8crnue95lApPRPwlbx2Vq0fUl2l/S4QsRAYJ1acUDEAAIAAAACAAAAAgAAAAAAAAAAAAAAiAgLSDKUC7iiWhtIYFb1DqAY3sGmOH7zb5MrtRF9sGgqQ7xgnVpxQMQAAgAAAAIAAAACAAAAAAAQAAAAA"),
    ("PSBT with global unsigned tx that has 0 inputs and 0 outputs",
     "cHNidP8BAAoAAAAAAAAAAAAAAA=="),
    ("PSBT with 0 inputs",
     "cHNidP8BAEwCAAAAAALT3/UFAAAAABl2qRTQxZkDxbrChodg6Q/VIaRmWqdlIIisAOH1BQAAAAAXqRQ1RebjO4MsRwUPJNPuuTycA5SLx4ezLhMAAAAA"),
]

# --- BIP174 roles ---
CREATOR_HEX = (
    "70736274ff01009a020000000258e87a21b56daf0c23be8e7070456c336f7cbaa5c8757924f545887bb2abdd7500"
    "00000000ffffffff838d0427d0ec650a68aa46bb0b098aea4422c071b2ca78352a077959d07cea1d0100000000ff"
    "ffffff0270aaf00800000000160014d85c2b71d0060b09c9886aeb815e50991dda124d00e1f5050000000016001400"
    "aea9a2e5f0f876a588df5546e8742d1d87008f000000000000000000")
FINALIZED_B64 = (
    "cHNidP8BAJoCAAAAAljoeiG1ba8MI76OcHBFbDNvfLqlyHV5JPVFiHuyq911AAAAAAD/////g40EJ9DsZQpoqka7CwmK6kQiwHGyyng1Kgd5WdB86h0BAAAAAP////8CcKrwCAAAAAAWABTYXCtx0AYLCcmIauuBXlCZHdoSTQDh9QUAAAAAFgAUAK6pouXw+HaliN9VRuh0LR2HAI8AAAAAAAEAuwIAAAABqtc5MQGL0l+ErkALaISL4J23BurCrBgpi6vucatlb4sAAAAASEcwRAIgWPb8fGoz4bMVSNSByCbAFb0wE1qtQs1neQ2rZtKtJDsCIEoc7SYExnNbY5PltBaR3XiwDwxZQvufdRhW+qk4FX26Af7///8CgPD6AgAAAAAXqRQPuUY0IWlrgsgzryQceMF9295JNIfQ8gonAQAAABepFCnKdPigj4GZlCgYXJe12FLkBj9hh2UAAAABB9oARzBEAiB0AYrUGACXuHMyPAAVcgs2hMyBI4kQSOfbzZtVrWecmQIgc9Npt0Dj61Pc76M4I8gHBRTKVafdlUTxV8FnkTJhEYwBSDBFAiEA9hA4swjcHahlo0hSdG8BV3KTQgjG0kRUOTzZm98iF3cCIAVuZ1pnWm0KArhbFOXikHTYolqbV2C+ooFvZhkQoAbqAUdSIQKVg785rgpgl0etGZrd1jT6YQhVnWxc05tMIYPxq5bgfyEC2rYf9JoU22p9ArDNH7t4/EsYMStbTlTa5Nui+/71NtdSrgABASAAwusLAAAAABepFLf1+vQOPUClpFmx2zU18rcvqSHohwEHIyIAIIwjUxc3Q7WV37Sge3K6jkLjeX2nTof+fZ10l+OyAokDAQjaBABHMEQCIGLrelVhB6fHP0WsSrWh3d9vcHX7EnWWmn84Pv/3hLyyAiAMBdu3Rw2/LwhVfdNWxzJcHtMJE+mWzThAlF2xIijaXwFHMEQCIGX0W6WZi1mif/4ae+0BavHx+Q1Us6qPdFCqX1aiUQO9AiB/ckcDrR7blmgLKEtW1P/LiPf7dZ6rvgiqMPKbhROD0gFHUiEDCJ3BDHrG21T5EymvYXMz2ziM6tDCMfcjN50bmQMLAtwhAjrdkE89bc9Z3bkGsN7iNSm3/7ntUOXoYVGSaGAiHw5zUq4AIgIDqaTDf1mW06ol26xrVwrwZQOUSSlCRgs1R1Ptnuylh3EQ2QxqTwAAAIAAAACABAAAgAAiAgJ/Y5l1fS7/VaE2rQLGhLGDi2VW5fG2s0KCqUtrUAUQlhDZDGpPAAAAgAAAAIAFAACAAA==")
EXTRACTED_HEX = (
    "0200000000010258e87a21b56daf0c23be8e7070456c336f7cbaa5c8757924f545887bb2abdd7500000000da0047"
    "3044022074018ad4180097b873323c0015720b3684cc8123891048e7dbcd9b55ad679c99022073d369b740e3eb53"
    "dcefa33823c8070514ca55a7dd9544f157c167913261118c01483045022100f61038b308dc1da865a34852746f0157"
    "72934208c6d24454393cd99bdf2217770220056e675a675a6d0a02b85b14e5e29074d8a25a9b5760bea2816f661910"
    "a006ea01475221029583bf39ae0a609747ad199addd634fa6108559d6c5cd39b4c2183f1ab96e07f2102dab61ff49a"
    "14db6a7d02b0cd1fbb78fc4b18312b5b4e54dae4dba2fbfef536d752aeffffffff838d0427d0ec650a68aa46bb0b09"
    "8aea4422c071b2ca78352a077959d07cea1d01000000232200208c2353173743b595dfb4a07b72ba8e42e3797da74e"
    "87fe7d9d7497e3b2028903ffffffff0270aaf00800000000160014d85c2b71d0060b09c9886aeb815e50991dda124d"
    "00e1f5050000000016001400aea9a2e5f0f876a588df5546e8742d1d87008f000400473044022062eb7a556107a7c7"
    "3f45ac4ab5a1dddf6f7075fb1275969a7f383efff784bcb202200c05dbb7470dbf2f08557dd356c7325c1ed30913e9"
    "96cd3840945db12228da5f01473044022065f45ba5998b59a27ffe1a7bed016af1f1f90d54b3aa8f7450aa5f56a251"
    "03bd02207f724703ad1edb96680b284b56d4ffcb88f7fb759eabbe08aa30f29b851383d20147522103089dc10c7ac6"
    "db54f91329af617333db388cead0c231f723379d1b99030b02dc21023add904f3d6dcf59ddb906b0dee23529b7ffb9"
    "ed50e5e86151926860221f0e7352ae00000000")


@pytest.mark.parametrize("name,exc,match,b64", INVALID, ids=[v[0] for v in INVALID])
def test_bip174_invalid_vectors_rejected(name, exc, match, b64):
    with pytest.raises(exc, match=match):
        PSBT.from_base64(b64)
    with pytest.raises(exc, match=match):          # binary form too
        PSBT.parse(base64.b64decode(b64))


@pytest.mark.parametrize("name,b64", VALID, ids=[v[0] for v in VALID])
def test_bip174_valid_vectors_roundtrip(name, b64):
    p = PSBT.from_base64(b64)
    assert p.to_base64() == b64
    assert p.serialize() == base64.b64decode(b64)
    assert PSBT.parse(p.serialize()) == p


def test_bip174_valid_vector_fields():
    p = PSBT.from_base64(VALID[1][1])  # first input finalized, second P2SH-P2WPKH
    assert p.inputs[0].final_scriptsig[:1] == b"\x47" and p.inputs[0].is_final()
    assert p.inputs[1].redeem_script.hex() == "001485d13537f2e265405a34dbafa9e3dda01fb82308"
    assert p.inputs[1].witness_utxo == TxOut(100_000_000, bytes.fromhex("a9143545e6e33b832c47050f24d3eeb93c9c03948bc787"))
    assert PSBT.from_base64(VALID[2][1]).inputs[0].sighash_type == SIGHASH_ALL
    p = PSBT.from_base64(VALID[3][1])
    assert [str(ko) for ko in p.outputs[0].bip32_derivation.values()] == ["[b4a6ba67/0h/0h/2h]"]
    p = PSBT.from_base64(VALID[5][1])  # global xpubs
    assert sorted(str(ko) for ko in p.xpubs.values()) == ["[d90c6a4f/174h/0h]", "[d90c6a4f/174h/1h]"]
    p = PSBT.from_base64(VALID[6][1])  # unknown types kept
    assert p.inputs[0].unknown == {bytes.fromhex("f0010203040506070809"):
                                   bytes.fromhex("0102030405060708090a0b0c0d0e0f")}
    assert PSBT.from_base64(VALID[8][1]).tx.inputs == []


def test_bip174_creator():
    tx = Tx(version=2, locktime=0, inputs=[
        TxIn(OutPoint.from_hex("75ddabb27b8845f5247975c8a5ba7c6f336c4570708ebe230caf6db5217ae858", 0)),
        TxIn(OutPoint.from_hex("1dea7cd05979072a3578cab271c02244ea8a090bbb46aa680a65ecd027048d83", 1)),
    ], outputs=[TxOut(149_990_000, bytes.fromhex("0014d85c2b71d0060b09c9886aeb815e50991dda124d")),
                TxOut(100_000_000, bytes.fromhex("001400aea9a2e5f0f876a588df5546e8742d1d87008f"))])
    assert PSBT.from_tx(tx).serialize().hex() == CREATOR_HEX


def test_bip174_finalized_roundtrip_and_extractor():
    p = PSBT.from_base64(FINALIZED_B64)
    assert p.to_base64() == FINALIZED_B64
    assert p.is_finalized()
    p.finalize()  # nothing left to do
    assert p.to_base64() == FINALIZED_B64
    tx = p.extract()
    assert tx.serialize().hex() == EXTRACTED_HEX
    pbk = pytest.importorskip("pbk")
    spent = p.spent_outputs()
    for i in range(2):
        assert _kernel_verify(pbk, tx.serialize(), spent, i)


def test_bip174_xpub_vector_finalizes_p2wpkh_and_passes_kernel():
    """VALID[7] carries two signed P2WPKH inputs: finalize, extract, verify."""
    p = PSBT.from_base64(VALID[7][1])
    p.finalize()
    assert p.is_finalized()
    for inp in p.inputs:
        assert not inp.partial_sigs and not inp.bip32_derivation
        assert len(inp.final_scriptwitness) == 2 and inp.witness_utxo is not None
    tx = p.extract()
    assert p.fee() == 2 * 100_000_000 - 100_000_000 - 99_900_000
    pbk = pytest.importorskip("pbk")
    for i in range(2):
        assert _kernel_verify(pbk, tx.serialize(), p.spent_outputs(), i)
    # finalized PSBT survives a round trip
    assert PSBT.from_base64(p.to_base64()) == p


# --- our own PSBTs ---------------------------------------------------------------------

def _kernel_verify(pbk, raw, spent, index):
    ktx = pbk.Transaction(raw)
    outs = [pbk.TransactionOutput(pbk.ScriptPubkey(o.script_pubkey), o.value) for o in spent]
    pre = pbk.script.PrecomputedTransactionData(ktx, outs)
    try:
        return bool(pbk.ScriptPubkey(spent[index].script_pubkey).verify(
            spent[index].value, ktx, pre, index, pbk.ScriptVerificationFlags.ALL))
    except pbk.ScriptVerifyException:
        return False


ROOT = ExtendedPrivateKey.from_seed(bytes(range(100, 132)), network="regtest")


def _wallet_psbt():
    """Spends one P2WPKH, one P2TR (BIP86) and one P2SH-P2WPKH coin to a P2TR output and a P2WPKH change."""
    kw, kt, kn = ROOT.derive("m/84h/1h/0h/0/3"), ROOT.derive("m/86h/1h/0h/0/5"), ROOT.derive("m/49h/1h/0h/0/1")
    kc, kd = ROOT.derive("m/84h/1h/0h/1/0"), ROOT.derive("m/86h/1h/0h/0/6")
    nested = p2wpkh_script(kn.pubkey)
    spent = [TxOut(120_000, p2wpkh_script(kw.pubkey)), TxOut(75_000, taproot_output_script(kt.xonly)),
             TxOut(40_000, p2sh_script(hash160(nested)))]
    tx = Tx(version=2, locktime=200, inputs=[
        TxIn(OutPoint(bytes([0x11]) * 32, 1), sequence=0xFFFFFFFD),
        TxIn(OutPoint(bytes([0x22]) * 32, 0), sequence=0xFFFFFFFD),
        TxIn(OutPoint(bytes([0x33]) * 32, 7), sequence=0xFFFFFFFD)],
        outputs=[TxOut(200_000, taproot_output_script(kd.xonly)), TxOut(34_000, p2wpkh_script(kc.pubkey))])
    p = PSBT.from_tx(tx)
    fp = ROOT.fingerprint
    for inp, out in zip(p.inputs, spent):
        inp.witness_utxo = out
    p.inputs[0].bip32_derivation[kw.pubkey] = KeyOrigin(fp, tuple(_path("m/84h/1h/0h/0/3")))
    p.inputs[1].tap_internal_key = kt.xonly
    p.inputs[1].tap_bip32_derivation[kt.xonly] = TapKeyOrigin((), KeyOrigin(fp, tuple(_path("m/86h/1h/0h/0/5"))))
    p.inputs[2].redeem_script = nested
    p.inputs[2].bip32_derivation[kn.pubkey] = KeyOrigin(fp, tuple(_path("m/49h/1h/0h/0/1")))
    p.outputs[0].tap_internal_key = kd.xonly
    p.outputs[0].tap_bip32_derivation[kd.xonly] = TapKeyOrigin((), KeyOrigin(fp, tuple(_path("m/86h/1h/0h/0/6"))))
    p.outputs[1].bip32_derivation[kc.pubkey] = KeyOrigin(fp, tuple(_path("m/84h/1h/0h/1/0")))
    return p, (kw, kt, kn)


def _path(s):
    return parse_path(s)


def test_our_psbt_roundtrip_sign_finalize_extract_kernel():
    p, (kw, kt, kn) = _wallet_psbt()
    p.unknown[bytes.fromhex("0f77")] = b"global unknown"
    p.proprietary[b"\xfc\x04test\x01"] = b"prop"
    p.inputs[0].unknown[bytes.fromhex("ee00")] = b"x"
    p.outputs[1].unknown[bytes.fromhex("ee01")] = b"y"
    raw = p.serialize()
    q = PSBT.parse(raw)
    assert q == p and q.serialize() == raw
    assert PSBT.from_base64(p.to_base64()) == p
    assert p.fee() == 235_000 - 234_000
    # sign (as hsmd would), round trip the signed PSBT, finalize, extract
    p.sign_input(0, kw.secret)
    p.sign_input(1, kt.secret)
    p.sign_input(2, kn.secret)
    assert len(p.inputs[1].tap_key_sig) == 64
    assert PSBT.parse(p.serialize()) == p
    p.finalize()
    assert p.is_finalized()
    assert p.inputs[0].unknown == {bytes.fromhex("ee00"): b"x"}   # unknowns survive finalizing
    assert p.inputs[1].tap_internal_key is None and not p.inputs[1].tap_bip32_derivation
    assert p.inputs[2].final_scriptsig == bytes([22]) + p2wpkh_script(kn.pubkey)
    assert PSBT.parse(p.serialize()) == p
    tx = p.extract()
    assert tx.inputs[1].witness == [p.inputs[1].final_scriptwitness[0]]
    pbk = pytest.importorskip("pbk")
    for i in range(3):
        assert _kernel_verify(pbk, tx.serialize(), p.spent_outputs(), i), f"input {i}"


def test_sighash_type_field_is_used_and_checked():
    p, (kw, kt, _) = _wallet_psbt()
    p.inputs[0].sighash_type = SIGHASH_SINGLE
    p.inputs[1].sighash_type = SIGHASH_ALL
    p.sign_input(0, kw.secret)
    p.sign_input(1, kt.secret)
    assert list(p.inputs[0].partial_sigs.values())[0][-1] == SIGHASH_SINGLE
    assert p.inputs[1].tap_key_sig[64] == SIGHASH_ALL and len(p.inputs[1].tap_key_sig) == 65
    p.finalize_input(0)
    p.finalize_input(1)
    # a signature whose hash type differs from the field is refused
    q, (kw, kt, _) = _wallet_psbt()
    q.sign_input(1, kt.secret)            # SIGHASH_DEFAULT
    q.inputs[1].sighash_type = SIGHASH_ALL
    with pytest.raises(PsbtFinalizeError, match="hash type"):
        q.finalize_input(1)


def test_finalize_and_extract_errors():
    p, (kw, kt, kn) = _wallet_psbt()
    with pytest.raises(PsbtExtractError, match=r"\[0, 1, 2\]"):
        p.extract()
    p.sign_input(0, kw.secret)
    with pytest.raises(PsbtFinalizeError) as e:
        p.finalize()
    assert "input 1: no taproot key-path signature" in str(e.value)
    assert "input 2: no signature" in str(e.value)
    assert p.inputs[0].is_final() and not p.is_finalized()   # what could be finalized was
    with pytest.raises(PsbtError, match="does not match"):
        p.sign_input(1, kw.secret)            # wrong key for the taproot output
    with pytest.raises(PsbtError, match="does not match"):
        p.sign_input(2, kw.secret)
    p.inputs[2].witness_utxo = None
    with pytest.raises(PsbtFinalizeError, match="no witness or non-witness utxo"):
        p.finalize_input(2)
    p.inputs[2].witness_utxo = TxOut(1, bytes.fromhex("76a914" + "00" * 20 + "88ac"))
    with pytest.raises(PsbtFinalizeError, match="cannot finalize"):
        p.finalize_input(2)
    p.inputs[1].tap_key_sig = bytes(64) + b"\x00"
    with pytest.raises(PsbtFinalizeError, match="hash type 0"):
        p.finalize_input(1)


def _rec(key: bytes, value: bytes) -> bytes:
    return ser_bytes(key) + ser_bytes(value)


def _minimal(global_extra=b"", input_map=b"", output_map=b"", trailing=b""):
    tx = Tx(inputs=[TxIn(OutPoint(bytes(32), 0))], outputs=[TxOut(1000, bytes.fromhex("0014" + "00" * 20))])
    return (b"psbt\xff" + _rec(b"\x00", tx.serialize(include_witness=False)) + global_extra + b"\x00"
            + input_map + b"\x00" + output_map + b"\x00" + trailing)


def test_strict_parsing_of_our_fields():
    assert PSBT.parse(_minimal()).serialize() == _minimal()
    xo = bytes.fromhex("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115")
    cases = [
        (dict(trailing=b"\x00"), PsbtFormatError, "extra data"),
        (dict(global_extra=_rec(b"\xfb", b"\x01\x00\x00\x00")), PsbtVersionError, "version 1"),
        (dict(global_extra=_rec(b"\xfb", b"\x00\x00")), PsbtValueError, "version"),
        (dict(global_extra=_rec(b"\x02", b"\x02\x00\x00\x00")), PsbtValueError, "version 2"),
        (dict(input_map=_rec(b"\x0e", bytes(32))), PsbtValueError, "version 2"),
        (dict(output_map=_rec(b"\x03", bytes(8))), PsbtValueError, "version 2"),
        (dict(input_map=_rec(b"\x17", xo[:31])), PsbtValueError, "tap internal key"),
        (dict(input_map=_rec(b"\x17\x00", xo)), PsbtKeyLengthError, "tap internal key"),
        (dict(input_map=_rec(b"\x13", bytes(63))), PsbtValueError, "tap key signature"),
        (dict(input_map=_rec(b"\x16" + xo[1:], b"\x00" + bytes(4))), PsbtKeyLengthError, "tap BIP32"),
        (dict(input_map=_rec(b"\x16" + xo, b"\x01" + bytes(4))), PsbtValueError, "leaf hash"),
        (dict(input_map=_rec(b"\x16" + xo, b"\x00" + bytes(5))), PsbtValueError, "fingerprint and path"),
        (dict(input_map=_rec(b"\x18", bytes(33))), PsbtValueError, "merkle root"),
        (dict(input_map=_rec(b"\x01", bytes.fromhex("e803000000000000") + b"\x16" + bytes(21))),
         PsbtValueError, "witness utxo"),
        (dict(input_map=_rec(b"\x03", b"\x01\x00\x00")), PsbtValueError, "sighash type"),
        (dict(input_map=_rec(b"\x08", b"\x02\x01\x00")), PsbtValueError, "final scriptWitness"),
        (dict(input_map=_rec(b"\x0b" + bytes(31), b"x")), PsbtKeyLengthError, "0x0b"),
        (dict(input_map=_rec(b"\x15" + bytes(34), b"\xac\xc0")), PsbtKeyLengthError, "control block"),
        (dict(input_map=_rec(b"\x06" + b"\x02" + bytes(32), bytes(4))), PsbtValueError, "not a valid public key"),
        (dict(input_map=_rec(b"\x00", Tx(inputs=[TxIn(OutPoint(bytes(32), 0))],
                                         outputs=[TxOut(5, b"")]).serialize())),
         PsbtValueError, "does not match the outpoint"),
        (dict(output_map=_rec(b"\x06", b"")), PsbtValueError, "tap tree"),
        (dict(output_map=_rec(b"\x07" + xo + b"\x00", b"\x00" + bytes(4))), PsbtKeyLengthError, "tap BIP32"),
        (dict(input_map=_rec(b"\x17", xo) + _rec(b"\x17", xo)), PsbtDuplicateKeyError, "duplicate key 17"),
    ]
    for kwargs, exc, match in cases:
        with pytest.raises(exc, match=match):
            PSBT.parse(_minimal(**kwargs))
    with pytest.raises(PsbtFormatError, match="base64"):
        PSBT.from_base64("cHNidP8!!")
    with pytest.raises(PsbtFormatError):
        PSBT.parse(b"psbt\xff\x01")          # truncated global map
    with pytest.raises(PsbtFormatError, match="input 0: missing"):
        PSBT.parse(_minimal()[:-2])
    with pytest.raises(PsbtFormatError, match="output 0: missing"):
        PSBT.parse(_minimal()[:-1])


def test_taproot_fields_roundtrip_in_core_order():
    xo = ROOT.derive("m/86h/1h/0h/0/0").xonly
    leaf = bytes(range(32))
    fields = (_rec(b"\x13", bytes(64)) + _rec(b"\x14" + xo + leaf, bytes(65))
              + _rec(b"\x15\xc1" + xo, bytes.fromhex("51c0"))
              + _rec(b"\x16" + xo, b"\x01" + leaf + bytes.fromhex("aabbccdd56000080"))
              + _rec(b"\x17", xo) + _rec(b"\x18", leaf))
    pre = _rec(b"\x0a" + bytes(20), b"p") + _rec(b"\x0b" + bytes(32), b"q")
    raw = _minimal(input_map=_rec(b"\x03", b"\x00\x00\x00\x00") + pre + fields,
                   output_map=_rec(b"\x05", xo) + _rec(b"\x06", b"\x00\xc0\x01\x51")
                   + _rec(b"\x07" + xo, b"\x00" + bytes.fromhex("aabbccdd56000080")))
    p = PSBT.parse(raw)
    assert p.serialize() == raw
    inp = p.inputs[0]
    assert inp.sighash_type == SIGHASH_DEFAULT and inp.tap_internal_key == xo and inp.tap_merkle_root == leaf
    assert inp.tap_bip32_derivation[xo] == TapKeyOrigin((leaf,), KeyOrigin(bytes.fromhex("aabbccdd"), (HARDENED + 86,)))
    assert p.outputs[0].tap_tree == [(0, 0xC0, b"\x51")]
    # the order records arrive in does not matter: we write Core's order
    tap_tail = _rec(b"\x17", xo) + _rec(b"\x18", leaf)
    shuffled = _minimal(input_map=_rec(b"\x18", leaf) + _rec(b"\x17", xo) + fields[:-len(tap_tail)]
                        + _rec(b"\x0b" + bytes(32), b"q") + _rec(b"\x0a" + bytes(20), b"p")
                        + _rec(b"\x03", b"\x00\x00\x00\x00"),
                        output_map=_rec(b"\x07" + xo, b"\x00" + bytes.fromhex("aabbccdd56000080"))
                        + _rec(b"\x06", b"\x00\xc0\x01\x51") + _rec(b"\x05", xo))
    assert shuffled != raw
    assert PSBT.parse(shuffled).serialize() == raw


def test_from_tx_rejects_signed_transactions():
    tx = Tx(inputs=[TxIn(OutPoint(bytes(32), 0), script_sig=b"\x51")], outputs=[])
    with pytest.raises(PsbtValueError):
        PSBT.from_tx(tx)
    tx = Tx(inputs=[TxIn(OutPoint(bytes(32), 0), witness=[b"\x01"])], outputs=[])
    with pytest.raises(PsbtValueError):
        PSBT.from_tx(tx)
    p = PSBT.from_tx(Tx(inputs=[], outputs=[]))
    assert p.serialize().hex() == "70736274ff01000a0200000000000000000000"
    assert p.extract().inputs == [] and PsbtInput().is_final() is False
