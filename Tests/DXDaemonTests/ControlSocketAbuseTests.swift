import DXControl
import DXTestSupport
import DXTransport
import Foundation
import Testing

/// Sends raw bytes on the control socket and reads reply lines.
struct RawClient {
    let socket: UnixSocket
    var pending: [UInt8] = []

    init(path: String) throws { socket = try UnixSocket.connect(path: path) }

    func send(_ text: String) throws { try socket.writeAll(Array(text.utf8)) }

    /// The next reply line, or nil when the daemon closed the connection.
    mutating func line() throws -> JSONValue? {
        while true {
            if let nl = pending.firstIndex(of: 0x0A) {
                let l = Array(pending[..<nl])
                pending.removeSubrange(...nl)
                return try JSONDecoder().decode(JSONValue.self, from: Data(l))
            }
            let b = try socket.read()
            if b.isEmpty { return nil }
            pending += b
        }
    }

    func close() { socket.close() }
}

@Suite("Control socket: bad input changes nothing and harms no one else", .serialized)
struct ControlSocketAbuseTests {
    static func daemon() async throws -> (TemporaryDirectory, DaemonProcess) {
        let dir = TemporaryDirectory()
        let d = try await DaemonProcess(in: dir, device: "simulator", timeScale: 20)
        try await d.waitForDevice()
        return (dir, d)
    }

    @Test func malformedRequestsGetJSONRPCErrors() async throws {
        let (dir, d) = try await Self.daemon()
        defer { withExtendedLifetime(dir) {} }
        var c = try RawClient(path: d.socketPath)
        defer { c.close() }
        let cases: [(String, Int)] = [
            ("{not json\n", RPCError.parseErrorCode),
            ("[1,2,3]\n", RPCError.invalidRequestCode),
            ("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"device.info\"}\n", RPCError.invalidRequestCode),
            ("{\"jsonrpc\":\"2.0\",\"id\":2}\n", RPCError.invalidRequestCode),
            ("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"no.such\"}\n", RPCError.methodNotFoundCode),
            ("{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"device.move\",\"params\":{\"x_um\":\"left\",\"y_um\":0}}\n", RPCError.invalidParamsCode),
            ("{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"scan.run\",\"params\":{\"lines\":-4}}\n", RPCError.invalidParamsCode),
            ("{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"scan.run\",\"params\":{\"mode\":\"triple\"}}\n", RPCError.invalidParamsCode),
            // Outside the device's limits (ICD §3: 1 to 64 lines per frame): bad params, as documented.
            ("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"scan.run\",\"params\":{\"lines_per_frame\":65}}\n", RPCError.invalidParamsCode),
            // A key the method does not know: refused, never ignored.
            ("{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"scan.run\",\"params\":{\"tube_curent_ua\":10}}\n", RPCError.invalidParamsCode),
            ("{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"scan.run\",\"params\":[200]}\n", RPCError.invalidParamsCode),
            ("{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"device.move\",\"params\":7}\n", RPCError.invalidRequestCode),
            ("{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"method\":\"device.info\"}\n", RPCError.invalidRequestCode),
            ("\u{00}\u{ff}\u{fe}garbage\n", RPCError.parseErrorCode),
        ]
        for (text, code) in cases {
            try c.send(text)
            let reply = try #require(try c.line(), "no reply to \(text)")
            #expect(reply["error"]?["code"]?.intValue == code, "\(text) -> \(reply)")
            #expect(reply["error"]?["message"]?.stringValue?.isEmpty == false)
        }
        // The same connection still works, and the device is untouched.
        try c.send("{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"device.status\"}\n")
        let ok = try #require(try c.line())
        #expect(ok["result"]?["state"]?.stringValue == "IDLE")
        #expect(ok["result"]?["xray_on"] == .bool(false))
    }

    @Test func aTenMegabyteLineClosesOnlyThatConnection() async throws {
        let (dir, d) = try await Self.daemon()
        defer { withExtendedLifetime(dir) {} }
        var big = try RawClient(path: d.socketPath)
        let chunk = String(repeating: "x", count: 1 << 20)
        var closed = false
        for _ in 0..<10 {
            do { try big.send(chunk) } catch { closed = true; break }
        }
        if !closed {
            let reply = try big.line()
            #expect(reply == nil || reply?["error"]?["code"]?.intValue == RPCError.invalidRequestCode)
        }
        big.close()
        let info = try await d.call("device.info")
        #expect(info["device"]?["serial"]?.stringValue == "DX1-000123")
        #expect(d.child.isRunning)
    }

    @Test func aHundredClientsAtOnce() async throws {
        let (dir, d) = try await Self.daemon()
        defer { withExtendedLifetime(dir) {} }
        let results = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<100 {
                group.addTask {
                    let method = i % 3 == 0 ? "device.info" : (i % 3 == 1 ? "device.status" : "service.sensors")
                    return (try? await d.call(method)) != nil
                }
            }
            var ok = 0
            for await r in group where r { ok += 1 }
            return ok
        }
        #expect(results == 100)
    }

    @Test func aClientThatLeavesMidScanStopsTheExposure() async throws {
        let (dir, d) = try await Self.daemon()
        defer { withExtendedLifetime(dir) {} }
        var c = try RawClient(path: d.socketPath)
        try c.send("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"scan.run\",\"params\":{\"lines\":1500,\"y_start_um\":0}}\n")
        // Wait for the first progress notification: the scan is running.
        let first = try #require(try c.line())
        #expect(first["method"]?.stringValue == "scan.progress")
        c.close()
        try await eventually("X-rays off after the client left") {
            guard let s = try? await d.call("device.status") else { return false }
            return s["xray_on"] == .bool(false) && s["state"]?.stringValue == "IDLE"
        }
        // Another client is served normally.
        let r = try await d.call("scan.run", .object(["lines": .number(20)]))
        #expect(r["result"]?.stringValue == "completed")
    }

    @Test func notificationsForSubscribers() async throws {
        let (dir, d) = try await Self.daemon()
        defer { withExtendedLifetime(dir) {} }
        let events = try await ControlConnection.with(socketPath: d.socketPath) { conn -> [String] in
            _ = try await conn.call("events.subscribe")
            async let scan = try? await ControlConnection.with(socketPath: d.socketPath) { try await $0.call("scan.run", .object(["lines": .number(50)])) }
            var types: [String] = []
            for await n in conn.notifications where n.method == "event" {
                if let t = n.params?["type"]?.stringValue { types.append(t) }
                if types.contains("scan_complete") { break }
            }
            _ = await scan
            return types
        }
        #expect(events.contains("scan_started"))
        #expect(events.contains("scan_complete"))
        #expect(events.contains("state"))
    }
}
