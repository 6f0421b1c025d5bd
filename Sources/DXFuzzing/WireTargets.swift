import DXProtocol
import DXSimulator
import DXTransport

/// USB bytes, both directions of the bus.
enum WireTargets {
    /// The first byte picks how the rest is cut into reads (1 to 255 bytes, or all at once),
    /// so that frames split at every point are exercised; the decoder then meets whatever the
    /// bytes hold, and every frame it returns is read as its kind says.
    static func frames(_ bytes: [UInt8]) -> FuzzOutcome {
        guard let first = bytes.first else { return .refused("no bytes") }
        let stream = bytes.dropFirst()
        let chunk = first == 0 ? max(stream.count, 1) : Int(first)
        var decoder = FrameDecoder()
        var tracker = SequenceTracker()
        var decoded = 0, readable = 0
        var at = stream.startIndex
        while at < stream.endIndex {
            let end = stream.index(at, offsetBy: chunk, limitedBy: stream.endIndex) ?? stream.endIndex
            decoder.append(stream[at..<end])
            at = end
            while let frame = decoder.next() {
                decoded += 1
                _ = tracker.observe(frame.seq)
                if payload(frame) { readable += 1 }
                // What the host writes back must read back the same (the encoder is the ICD's too).
                if let again = try? frame.encoded() {
                    var echo = FrameDecoder()
                    echo.append(again)
                    precondition(echo.next() == frame, "a frame re-encoded did not decode to itself")
                }
            }
        }
        let e = decoder.errors
        let summary = "\(decoded) frames (\(readable) readable), \(e.resyncs) resyncs, \(e.crcErrors) CRC errors, \(e.droppedBytes) bytes dropped"
        return decoded > 0 ? .accepted(summary) : .refused(summary)
    }

    /// A payload straight to its parser (a mutated payload inside a frame rarely survives the
    /// CRC): byte 0 mod 5 picks command, response, event, data, or the sim link's records.
    static func payloads(_ bytes: [UInt8]) -> FuzzOutcome {
        guard let first = bytes.first else { return .refused("no bytes") }
        let rest = Array(bytes.dropFirst())
        let kinds: [FrameKind] = [.command, .response, .event, .data]
        let pick = Int(first) % 5
        guard pick < kinds.count else {
            var link = SimLinkDecoder()
            link.append(rest)
            var records = 0
            do {
                while let record = try link.next() {
                    records += 1
                    var frames = FrameDecoder()
                    frames.append(record.bytes)
                    while let f = frames.next() { _ = payload(f) }
                }
            } catch {
                return .refused("sim link after \(records) records: \(error)")
            }
            return .accepted("sim link: \(records) records")
        }
        let kind = kinds[pick]
        return payload(Frame(kind: kind, seq: 0, payload: rest)) ? .accepted("\(kind) payload read") : .refused("\(kind) payload refused")
    }

    /// Reads a frame's payload as its kind says; true when it was readable.
    static func payload(_ frame: Frame) -> Bool {
        switch frame.kind {
        case .command:
            guard let command = try? Command(payload: frame.payload) else { return false }
            // The device's own check of a scan's parameters (BAD_PARAMS), and the host's.
            if case .configureScan(let c) = command {
                _ = c.violation(for: SimulatorConfiguration.standardInfo)
                _ = c.yUm(ofLine: Int64(c.lineCount))
            }
            // What the host encodes the device decodes to the same command.
            precondition((try? Command(payload: command.payload)) == command, "\(command) did not survive encoding")
            return true
        case .response:
            guard let response = try? Response(payload: frame.payload) else { return false }
            // The host reads a result as the command it sent expects; any of them may arrive.
            _ = try? DeviceInfo(decoding: response.result)
            _ = try? DeviceStatus(decoding: response.result)
            _ = try? SelfTestReport(decoding: response.result)
            _ = try? SensorReadings(decoding: response.result)
            _ = try? LogChunk(decoding: response.result)
            _ = try? EmptyResult(decoding: response.result)
            return true
        case .event:
            return (try? Event(payload: frame.payload)) != nil
        case .data:
            guard let data = try? DataFrame(payload: frame.payload) else { return false }
            for line in data.lines {
                _ = line.samples.count
            }
            return true
        }
    }
}
