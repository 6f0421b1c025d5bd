import DXControl

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
        Probe(.qcRun), Probe(.qcStatus), Probe(.qcReset), Probe(.qcOverride),
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
