import DXControl
import NIOCore
import NIOEmbedded

/// A line on the control socket, read by either end.
enum ControlTargets {
    /// One method's parameters and result, decoded as the daemon's table and the CLI decode
    /// them: the parameters strictly (`StrictDecoder`, what `MethodTable.on` does), the result
    /// as the client's typed call reads it.
    struct Probe: Sendable {
        let method: ControlMethod
        let params: @Sendable (JSONValue) -> String?
        let result: @Sendable (JSONValue) -> Bool

        init<P, R>(_ rpc: RPC<P, R>) {
            method = rpc.method
            params = { value in
                do {
                    _ = try StrictDecoder.decode(P.self, from: value)
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            result = { value in (try? value.decode(R.self)) != nil }
        }
    }

    /// Every method of the control socket (a test holds this list to `ControlMethod.allCases`).
    static let probes: [Probe] = [
        Probe(.deviceInfo), Probe(.deviceStatus), Probe(.deviceHome), Probe(.deviceMove), Probe(.scanRun), Probe(.scanAbort),
        Probe(.eventsSubscribe), Probe(.serviceSelftest), Probe(.serviceSensors), Probe(.serviceLog), Probe(.serviceReport),
        Probe(.serviceMetrics), Probe(.serviceReset), Probe(.serviceCalibrate), Probe(.examCreate), Probe(.examChecklist),
        Probe(.examStart), Probe(.examNext), Probe(.examRepeat), Probe(.examSkip), Probe(.examAdd), Probe(.examAbort),
        Probe(.examGet), Probe(.examList), Probe(.examResults), Probe(.examCorrect), Probe(.precisionStudy), Probe(.precisionList),
        Probe(.qcRun), Probe(.qcStatus), Probe(.qcReset), Probe(.qcOverride), Probe(.dicomQueue), Probe(.dicomResend),
    ]

    static func rpc(_ bytes: [UInt8]) -> FuzzOutcome {
        // The client's side: a response (each method's result) or a notification.
        let message = RPCMessage.parse(bytes)
        switch message {
        case .response(_, .success(let value))?:
            for probe in probes { _ = probe.result(value) }
        case .notification(let method, let params)?:
            _ = Notice.scanProgress.decode(method, params)
            _ = Notice.event.decode(method, params)
            _ = Notice.examStep.decode(method, params)
            _ = Notice.examWarning.decode(method, params)
        case .response(_, .failure)?, nil:
            break
        }
        // The daemon's side: the request, then its parameters as the method named (or, for a
        // name it does not know, as every method's, so that every decoder meets the bytes).
        switch RPCRequest.parse(bytes) {
        case .failure(let f):
            if case .response(let id, let result)? = message {
                return .accepted("a response to \(id.map { "\($0)" } ?? "no id"): \((try? result.get()) != nil ? "result" : "error")")
            }
            return .refused(f.error.message)
        case .success(let request):
            let params = request.params ?? .object([:])
            if case .array = params { return .refused("params must be an object (named parameters)") }
            guard let known = probes.first(where: { $0.method.rawValue == request.method }) else {
                let accepting = probes.filter { $0.params(params) == nil }.count
                return .accepted("\(request.method) is not a method (\(accepting) methods' parameters accept these)")
            }
            if let why = known.params(params) { return .accepted("\(request.method) refused: \(why)") }
            return .accepted("\(request.method): parameters accepted")
        }
    }
}

extension ControlTargets {
    /// The control socket's byte stream as the daemon's pipeline frames it: `LineDecoder` in a
    /// NIO channel (`EmbeddedChannel`), the stream cut into reads of a size the first byte
    /// picks (1–64 bytes), the line limit the daemon's or, when the second byte is odd, 64
    /// bytes (so that the too-long path is met at the fuzzer's input sizes). The lines, joined
    /// again, must be the stream (what is left at its end being the last line): a framing that
    /// lost, added or moved a byte traps, which the fuzzer reports. What a line says is the
    /// `rpc` target's to fuzz.
    static func stream(_ bytes: [UInt8]) -> FuzzOutcome {
        guard bytes.count >= 2 else { return .refused("no stream") }
        let chunk = Int(bytes[0] % 64) + 1
        let limit = bytes[1] % 2 == 1 ? 64 : RPCLine.maxLength
        let body = bytes.dropFirst(2)
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(LineDecoder(maxLength: limit)))
        var lines: [[UInt8]] = []
        func drain() throws {
            while let line = try channel.readInbound(as: ByteBuffer.self) {
                lines.append(Array(line.readableBytesView))
            }
        }
        do {
            var at = body.startIndex
            while at < body.endIndex {
                let end = body.index(at, offsetBy: chunk, limitedBy: body.endIndex) ?? body.endIndex
                try channel.writeInbound(channel.allocator.buffer(bytes: body[at..<end]))
                try drain()
                at = end
            }
            _ = try channel.finish()
            try drain()
        } catch is LineDecoder.LineTooLong {
            return .refused("a line over \(limit) bytes after \(lines.count) lines")
        } catch {
            return .refused("\(error)")
        }
        var joined = Array(lines.joined(separator: [0x0A]))
        if body.last == 0x0A { joined.append(0x0A) }
        precondition(joined.elementsEqual(body), "the control socket's framing changed the stream: \(lines.count) lines in reads of \(chunk) bytes")
        return .accepted("\(lines.count) lines in reads of \(chunk) bytes")
    }
}
