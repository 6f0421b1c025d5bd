import DXConsole
import DXControl
import DXTestSupport
import Foundation
import Synchronization
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The technologist's web console (`dexa-console`, docs/console-ui.md) against the real daemon
/// and simulator: its gate, the day driven through its API, Stop during a scan, and a daemon
/// restarted under it.
@Suite("The web console", .serialized)
struct WebConsoleTests {
    /// A running `dexa-console` and what it printed.
    struct Console {
        let child: ChildProcess
        let port: Int
        let token: String
        var base: String { "http://127.0.0.1:\(port)" }

        /// `dicomConfig`: the DICOM settings (its worklist peer); by default a file that does
        /// not exist (no peers), never the machine's own /etc/dexa/dicom.conf.
        init(in dir: TemporaryDirectory, socket: String, dicomConfig: String? = nil, qcPhantom: String? = nil) async throws {
            let urlFile = dir.file("console.url")
            child = try ChildProcess(executable: BuiltProducts.path("dexa-console"),
                                     arguments: ["--socket", socket, "--port", "0", "--url-file", urlFile, "--dicom-config", dicomConfig ?? dir.file("no-dicom.conf")]
                                        + (qcPhantom.map { ["--qc-phantom", $0] } ?? []),
                                     logPath: dir.file("console.log"))
            try await eventually("dexa-console's URL") { FileManager.default.fileExists(atPath: urlFile) }
            let url = try String(contentsOfFile: urlFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let components = URLComponents(string: url), let port = components.port,
                  let token = components.queryItems?.first(where: { $0.name == "token" })?.value else { throw TestTimeout("unreadable URL \(url)") }
            self.port = port
            self.token = token
            #expect(components.host == "127.0.0.1")
        }

        /// A request; `withToken`: the X-Dexa-Token header.
        func request(_ method: String, _ path: String, body: JSONValue? = nil, withToken: Bool = true, host: String? = nil) async throws -> (status: Int, body: Data) {
            guard let url = URL(string: base + path) else { throw TestTimeout("bad path \(path)") }
            var r = URLRequest(url: url)
            r.httpMethod = method
            r.timeoutInterval = 120
            if withToken { r.setValue(token, forHTTPHeaderField: "X-Dexa-Token") }
            if let host { r.setValue(host, forHTTPHeaderField: "Host") }
            if let body { r.httpBody = try JSONEncoder().encode(body); r.setValue("application/json", forHTTPHeaderField: "Content-Type") }
            let (data, response) = try await URLSession.shared.data(for: r)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
        }

        func state() async throws -> JSONValue {
            try JSONDecoder().decode(JSONValue.self, from: try await request("GET", "/api/state").body)
        }

        /// One dexad method through the console: its result, or the daemon's error.
        func call(_ method: String, _ params: JSONValue) async throws -> JSONValue {
            let (status, data) = try await request("POST", "/api/call", body: .object(["method": .string(method), "params": params]))
            let reply = try JSONDecoder().decode(JSONValue.self, from: data)
            guard status == 200, let result = reply["result"] else { throw TestTimeout("\(method) through the console: \(status) \(reply)") }
            return result
        }
    }

    static let speed = 10.0

    /// The simulator as a process of its own (its clock and exposures readable), a calibration
    /// in place, dexad on it at `speed`.
    static func examRig(_ dir: TemporaryDirectory) async throws -> (SimulatorProcess, DaemonProcess) {
        let sim = try await SimulatorProcess(in: dir, speed: speed, extra: ["--phantom", "patient"])
        try CalibrationFixture.install(stateDirectory: dir.file("state"))
        let daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: speed)
        try await daemon.waitForDevice()
        return (sim, daemon)
    }

    /// `examRig` with a console linked to its dexad.
    static func examRigWithConsole(_ dir: TemporaryDirectory) async throws -> (SimulatorProcess, DaemonProcess, Console) {
        let (sim, daemon) = try await examRig(dir)
        let console = try await Console(in: dir, socket: daemon.socketPath)
        try await eventually("the console linked to dexad") { (try? await console.state())?["daemon"]?["connected"] == .bool(true) }
        return (sim, daemon, console)
    }

    /// Stop pressed through the console with the unit at real time (at 10× a 100 ms hiccup of
    /// this machine would be a second of device time): the answer must say X-rays are off, and
    /// the simulator's own record gives how long after the press they went off (ms).
    static func pressStop(_ console: Console, _ sim: SimulatorProcess) async throws -> Double {
        #expect(try await sim.control("speed 1").contains("ok"))
        let pressed = try #require(try await sim.status()["uptimeMs"]?.numberValue)
        let (status, body) = try await console.request("POST", "/api/stop", body: .object([:]))
        let reply = try JSONDecoder().decode(JSONValue.self, from: body)
        #expect(status == 200 && reply["xray_on"] == .bool(false), "\(reply)")
        try await eventually("X-rays off", seconds: 10) { (try? await sim.status())?["xrayOn"] == .bool(false) }
        let exposures: [JSONValue] = if case .array(let a)? = try await sim.status()["exposures"] { a } else { [] }
        let running = exposures.first { ($0["xrayOnMs"]?.numberValue ?? .infinity) <= pressed && ($0["xrayOffMs"]?.numberValue ?? 0) >= pressed }
        return try #require(running?["xrayOffMs"]?.numberValue, "no exposure ran at the press: \(exposures)") - pressed
    }

    /// The blocks of a page's stream of one kind for one exam (a block may start with the
    /// chunked encoding's size line).
    static func events(_ page: ServerSentEvents, _ kind: String, exam id: JSONValue) -> [String] {
        let exam = id.intValue.map { "\"exam_id\":\($0)" } ?? "-"
        return page.text.components(separatedBy: "\n\n").filter { $0.contains("event: \(kind)\n") && $0.contains(exam) }
    }

    @Test func withoutItsTokenOrFromElsewhereTheConsoleRefuses() async throws {
        let dir = TemporaryDirectory()
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 10)
        defer { daemon.child.stop() }
        let console = try await Console(in: dir, socket: daemon.socketPath)
        defer { console.child.stop() }
        #expect(try await console.request("GET", "/?token=\(console.token)", withToken: false).status == 200)
        #expect(try await console.request("GET", "/", withToken: false).status == 403)
        #expect(try await console.request("GET", "/?token=0000", withToken: false).status == 403)
        #expect(try await console.request("GET", "/api/state", withToken: false).status == 403)
        #expect(try await console.request("POST", "/api/stop", body: .object([:]), withToken: false).status == 403)
        // Another name for this machine (DNS rebinding): refused whatever the token.
        #expect(try await console.request("GET", "/api/state", host: "dexa.example:\(console.port)").status == 403)
        // A method dexad does not have, or a field the console does not know: refused, nothing sent.
        #expect(try await console.request("POST", "/api/call", body: .object(["method": .string("exam.explode")])).status == 400)
        #expect(try await console.request("POST", "/api/call", body: .object(["method": .string("exam.list"), "parms": .object([:])])).status == 400)
        #expect(try await console.request("POST", "/api/call", body: .string("garbage")).status == 400)
        // Documents: a bad exam number or site is refused; an exam that does not exist is not found.
        for (path, status) in [("/api/report", 400), ("/api/report?exam=abc", 400), ("/api/report?exam=-1", 400),
                               ("/api/report?exam=999999", 404), ("/api/site-image?exam=999999&site=ap_spine", 404)] {
            #expect(try await console.request("GET", path).status == status, "\(path)")
        }
        // Bound to loopback only: from this machine's other addresses, nothing answers.
        let others = Self.nonLoopbackAddresses()
        print("the console is not reachable from: \(others)")
        if ProcessInfo.processInfo.environment["CI"] == "true" { #expect(!others.isEmpty, "no address but loopback to try from") }
        for address in others {
            #expect(!Self.tcpConnects(address, port: console.port), "the console answered on \(address)")
        }
        // Without the token, the stream and the calls are refused too, and a change with the
        // token in the query only.
        #expect(try await console.request("GET", "/api/events", withToken: false).status == 403)
        #expect(try await console.request("POST", "/api/call", body: .object(["method": .string("exam.list")]), withToken: false).status == 403)
        #expect(try await console.request("POST", "/api/call?token=\(console.token)", body: .object(["method": .string("exam.list")]), withToken: false).status == 403)
        #expect(try await console.request("POST", "/api/call", body: .object(["method": .string("events.subscribe")])).status == 400)
        // A body larger than the console reads: refused, and the console still serves.
        let big = JSONValue.object(["method": .string("exam.list"), "params": .object(["x": .string(String(repeating: "a", count: 100_000))])])
        #expect(try await console.request("POST", "/api/call", body: big).status == 413)
        #expect(try await console.request("GET", "/api/state").status == 200)
        // The log says what was refused and why; never the token (it is in the URL file only).
        let lines = console.child.log.split(separator: "\n")
        #expect(lines.contains { $0.contains("refused") })
        #expect(!lines.contains { $0.contains(console.token) })
    }

    /// A day's exam through the console's API only (as the page does it): created, its checklist
    /// answered piecemeal with the daemon's rules shown at each answer (a block first), started;
    /// Stop pressed while the spine's scan exposes turns X-rays off within 1 s of the press on
    /// the simulator's clock, and the exam is aborted with the console's reason.
    @Test func stopDuringAScanTurnsXRaysOffWithinASecond() async throws {
        let dir = TemporaryDirectory()
        let (sim, daemon, console) = try await Self.examRigWithConsole(dir)
        defer { console.child.stop(); sim.child.stop(); daemon.child.stop() }

        let exam = try await console.call("exam.create", .object(["patient": ExamTests.patient, "referral": .string("Dr Who: screening")]))
        let id = try #require(exam["id"])
        // A pregnancy answer blocks, and says so at once.
        let blocked = try await console.call("exam.checklist", .object(["exam_id": id, "answers": .object(["pregnancy": .string("yes")])]))
        #expect(blocked["state"]?.stringValue == "blocked", "\(blocked)")
        if case .array(let blocks)? = blocked["checklist"]?["blocks"] { #expect(!blocks.isEmpty) } else { Issue.record("no blocks in \(blocked)") }
        let ready = try await console.call("exam.checklist", .object(["exam_id": id, "answers": ExamTests.clearAnswers]))
        #expect(ready["state"]?.stringValue == "ready", "\(ready)")

        let page = try ServerSentEvents(port: console.port, token: console.token)
        defer { page.close() }
        try await eventually("the stream's first word") { page.text.contains("event: daemon") }
        let step = Task { try await console.call("exam.start", .object(["exam_id": id])) }
        try await eventually("the spine scan exposing", seconds: 90) {
            guard let s = try? await console.state(), case .array(let exams)? = s["exams"],
                  let e = exams.first(where: { $0["id"] == id }), case .array(let attempts)? = e["attempts"],
                  attempts.last?["exposure"] != nil, s["device"]?["xray_on"] == .bool(true) else { return false }
            // Over the patient, not the air reference in the air zone (y beyond 1.5 m) before it.
            return (s["device"]?["y_um"]?.numberValue ?? .infinity) < 1_500_000
        }
        let off = try await Self.pressStop(console, sim)
        print(String(format: "console Stop: X-rays off %.0f ms after the press (simulator's clock)", off))
        #expect(off <= 1000)
        _ = try? await step.value
        let shown = try await console.call("exam.get", .object(["exam_id": id]))
        #expect(shown["state"]?.stringValue == "aborted" && shown["abort_cause"]?.stringValue == "other", "\(shown)")
        if case .array(let warnings)? = shown["warnings"] {
            #expect(warnings.contains { $0["message"]?.stringValue == "exam aborted: Stop pressed on the console" }, "\(warnings)")
        } else { Issue.record("no warnings in \(shown)") }
        #expect(try await console.state()["device"]?["xray_on"] == .bool(false))
        // The console's own step reached the page once (its connection also subscribes to the
        // exams' notifications: dexad sends a step's to the others only).
        let positioning = Self.events(page, "exam.step", exam: id).filter { $0.contains("\"phase\":\"positioning\"") }
        #expect(positioning.count == 1, "\(positioning)")
        // The press is in the audit trail as the console's user's own call.
        #expect(daemon.auditEntries.contains { $0["method"]?.stringValue == "exam.abort" })
    }

    /// Stop ends whatever scan runs, not only the exam's: with an exam idle between sites (the
    /// spine done, the hips not begun) and a service scan (`scan.run`) exposing, Stop turns
    /// X-rays off, aborts the idle exam as well, and says "X-rays off" only once the unit does.
    /// The spine is stepped on another connection (as `dexa exam run` does it): its steps,
    /// progress and image reach the console's page all the same.
    @Test func stopEndsAScanThatIsNotTheExams() async throws {
        let dir = TemporaryDirectory()
        let (sim, daemon, console) = try await Self.examRigWithConsole(dir)
        defer { console.child.stop(); sim.child.stop(); daemon.child.stop() }
        let exam = try await console.call("exam.create", .object(["patient": ExamTests.patient, "referral": .string("Dr Who: screening")]))
        let id = try #require(exam["id"])
        _ = try await console.call("exam.checklist", .object(["exam_id": id, "answers": ExamTests.clearAnswers]))
        // The spine started on a connection of the test's own, as `dexa exam run` does: its
        // steps, progress and image reach the console's page as it runs.
        let page = try ServerSentEvents(port: console.port, token: console.token)
        defer { page.close() }
        try await eventually("the stream's first word") { page.text.contains("event: daemon") }
        let step = try await ControlConnection.with(socketPath: daemon.socketPath) { c in try await c.call("exam.start", .object(["exam_id": id])) }
        #expect(step["attempt"]?["status"]?.stringValue == "completed", "\(step)")
        try await eventually("the spine's end on the page") { Self.events(page, "exam.step", exam: id).contains { $0.contains("\"phase\":\"done\"") } }
        #expect(Self.events(page, "scan.progress", exam: id).count >= 3 && Self.events(page, "scan.image", exam: id).count >= 3, "\(page.text.suffix(1500))")
        #expect(Self.events(page, "exam.step", exam: id).contains { $0.contains("\"phase\":\"scanning\"") && $0.contains("ap_spine") })
        // A service scan of 1,500 lines, started through the console too.
        let (started, _) = try await console.request("POST", "/api/call", body: .object(["method": .string("scan.run"),
                                                      "params": .object(["mode": .string("dual"), "lines": .number(1500), "y_start_um": .number(100_000)])]))
        #expect(started == 202)
        do {
            try await eventually("the service scan exposing", seconds: 20) { (try? await sim.status())?["xrayOn"] == .bool(true) }
        } catch {
            Issue.record("the service scan did not expose; audit: \(daemon.auditEntries.suffix(3))")
            return
        }
        let off = try await Self.pressStop(console, sim)
        print(String(format: "console Stop of a service scan: X-rays off %.0f ms after the press (simulator's clock)", off))
        #expect(off <= 1000)
        #expect(try await console.call("exam.get", .object(["exam_id": id]))["state"]?.stringValue == "aborted")
    }

    /// The morning's QC scan from the console (`qc.run` with the console's `--qc-phantom`), the
    /// ESP phantom on the simulator's table: answered at once (202), its verdict comes to the
    /// page as `call.result`, and the state's QC shows the scan in the baseline. A console
    /// without the phantom's file says so in its state (the page disables the button).
    @Test func theDailyQCScanFromTheConsole() async throws {
        let dir = TemporaryDirectory()
        let (_, esp) = try AnalyzeTests.writePhantoms(dir)
        let (sim, daemon) = try await Self.examRig(dir)
        defer { sim.child.stop(); daemon.child.stop() }
        #expect(try await sim.control("phantom bench").contains("ok"))
        let console = try await Console(in: dir, socket: daemon.socketPath, qcPhantom: esp)
        defer { console.child.stop() }
        try await eventually("the console linked to dexad") { (try? await console.state())?["daemon"]?["connected"] == .bool(true) }
        let before = try await console.state()
        #expect(before["console"]?["qc_phantom"]?.stringValue == esp && before["qc"]?["scans"]?.intValue == 0, "\(before)")
        let page = try ServerSentEvents(port: console.port, token: console.token)
        defer { page.close() }
        try await eventually("the stream's first word") { page.text.contains("event: daemon") }
        let (accepted, _) = try await console.request("POST", "/api/call", body: .object(["method": .string("qc.run"), "params": .object(["phantom": .string(esp)])]))
        #expect(accepted == 202)
        try await eventually("the QC scan's result on the page", seconds: 120) { page.text.contains("\"method\":\"qc.run\"") }
        let result = try #require(page.text.components(separatedBy: "\n\n").first { $0.contains("event: call.result") && $0.contains("qc.run") })
        #expect(result.contains("\"verdict\":\"baseline\""), "\(result)")
        let after = try await console.state()
        #expect(after["qc"]?["scans"]?.intValue == 1 && after["qc"]?["condition"]?.stringValue == "baseline_incomplete", "\(String(describing: after["qc"]))")
        // The audit trail has it as the console's user's call.
        #expect(daemon.auditEntries.contains { $0["method"]?.stringValue == "qc.run" })
        // Without the file: the state says so.
        let plain = try await Console(in: TemporaryDirectory(), socket: daemon.socketPath)
        defer { plain.child.stop() }
        #expect(try await plain.state()["console"]?["qc_phantom"] == .null)
    }

    /// Three pages may listen at once (a browser's six connections to a server are shared by
    /// its tabs: three streams leave three for requests and Stop); a fourth is refused (429)
    /// and still gets the state; a page that goes frees its place within seconds.
    @Test func aFourthPageGetsNoStream() async throws {
        let dir = TemporaryDirectory()
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 10)
        defer { daemon.child.stop() }
        let console = try await Console(in: dir, socket: daemon.socketPath)
        defer { console.child.stop() }
        let pages = try (0..<3).map { _ in try ServerSentEvents(port: console.port, token: console.token) }
        for page in pages { try await eventually("a stream's first word") { page.text.contains("event: daemon") } }
        #expect(try await console.request("GET", "/api/events").status == 429)
        #expect(try await console.request("GET", "/api/state").status == 200)
        pages[0].close()
        let again = try await {
            var fourth: ServerSentEvents?
            try await eventually("a place freed", seconds: 15) {
                fourth?.close()
                fourth = try? ServerSentEvents(port: console.port, token: console.token)
                try? await Task.sleep(for: .milliseconds(300))
                return fourth?.text.contains("event: daemon") == true
            }
            return fourth
        }()
        again?.close()
        for page in pages.dropFirst() { page.close() }
    }

    /// The desktop entry (`dexa-console --open`) and the user unit's own command line: with
    /// `systemctl` and `xdg-open` stood in for by scripts on the PATH (no user session here),
    /// `--open` starts the unit, passes over a URL file left by the unit's run before (another
    /// token: the console answers it 403), and gives the browser a file of the user's own that
    /// leads to the console now running, which answers to it. The console is started from the
    /// unit's `ExecStart=` as written, `%t` the runtime directory (the port made 0: a free one).
    @Test func theDesktopEntryStartsTheUnitAndOpensTheConsole() async throws {
        let dir = TemporaryDirectory()
        let runtime = dir.file("run"), bin = dir.file("bin")
        for d in [runtime, bin] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let unitFile = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Systemd/dexa-console.service")
        let unit = try String(contentsOf: unitFile, encoding: .utf8)
        let exec = try #require(unit.split(separator: "\n").first { $0.hasPrefix("ExecStart=") }?.dropFirst("ExecStart=".count))
        #expect(exec.hasPrefix("/usr/bin/dexa-console ") && exec.contains("--url-file %t/dexa-console.url"), "\(exec)")
        let command = String(exec).replacingOccurrences(of: "/usr/bin/dexa-console", with: BuiltProducts.path("dexa-console"))
            .replacingOccurrences(of: "%t", with: runtime).replacingOccurrences(of: "--port 8642", with: "--port 0")

        // The URL file of the unit's run before: a console that answers, but not to that token.
        let before = try await Console(in: dir, socket: dir.file("no-dexad.sock"))
        defer { before.child.stop() }
        let stale = "http://127.0.0.1:\(before.port)/?token=" + String(repeating: "0f", count: 32)
        try (stale + "\n").write(toFile: runtime + "/dexa-console.url", atomically: true, encoding: .utf8)

        // systemctl --user start: the unit's command a second later (a restart), in the
        // background, with no descriptor but the standard three of whoever ran it (as systemd
        // starts a unit; this test's own process would otherwise wait for the console to end
        // before it saw `--open` end, Foundation's `Process` watching a descriptor it passed).
        let systemctl = """
            #!/bin/bash
            echo "$@" >> \(dir.file("systemctl.args"))
            ( for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
              sleep 1; DEXA_SOCKET=\(dir.file("no-dexad.sock")) DEXA_DICOM_CONFIG=\(dir.file("no-dicom.conf")) exec \(command) > \(dir.file("unit.log")) 2>&1 ) &
            echo $! > \(dir.file("unit.pid"))
            """
        let xdgOpen = """
            #!/bin/sh
            cp "$1" \(dir.file("opened.html")) && stat -c %a "$1" > \(dir.file("opened.mode"))
            """
        for (name, script) in [("systemctl", systemctl), ("xdg-open", xdgOpen)] {
            try (script + "\n").write(toFile: bin + "/" + name, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: bin + "/" + name)
        }
        let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let open = try ChildProcess(executable: BuiltProducts.path("dexa-console"), arguments: ["--open"], logPath: dir.file("open.log"),
                                    environment: ["PATH": path, "XDG_RUNTIME_DIR": runtime])
        let status = await open.waitForExit(seconds: 30)
        let unitPid = (try? String(contentsOfFile: dir.file("unit.pid"), encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        defer { if let unitPid { kill(unitPid, SIGKILL) } }
        #expect(status == 0, "\(open.log)")
        #expect((try? String(contentsOfFile: dir.file("systemctl.args"), encoding: .utf8)) == "--user start dexa-console.service\n")
        let opened = try String(contentsOfFile: dir.file("opened.html"), encoding: .utf8)
        #expect((try? String(contentsOfFile: dir.file("opened.mode"), encoding: .utf8))?.hasPrefix("600") == true)
        let url = try #require(opened.components(separatedBy: "url=").last?.components(separatedBy: "\"").first)
        #expect(url != stale && url.hasPrefix("http://127.0.0.1:"), "\(opened)")
        #expect(await ConsoleProbe.answers(url))
        #expect(!(await ConsoleProbe.answers(stale)))
        // The unit's URL file: the user's alone.
        let mode = try FileManager.default.attributesOfItem(atPath: runtime + "/dexa-console.url")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // The unit's console ends on SIGTERM (what `systemctl stop` sends): it was not started
        // with the signal blocked.
        let pid = try #require(unitPid)
        kill(pid, SIGTERM)
        // Ended: gone, or a zombie nobody reaps (its parent, the stand-in's shell, is gone).
        try await eventually("the unit's console ended by SIGTERM", seconds: 10) {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
            return stat.components(separatedBy: ") ").last?.hasPrefix("Z") == true
        }
    }

    /// The daemon restarted while the page is open: the console says "disconnected" (state and
    /// stream), connects again by itself, and shows the exam's true state after the restart.
    @Test func aRestartedDaemonIsSeenAndRejoined() async throws {
        let dir = TemporaryDirectory()
        var daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 10)
        let console = try await Console(in: dir, socket: daemon.socketPath)
        defer { console.child.stop() }
        try await eventually("linked") { (try? await console.state())?["daemon"]?["connected"] == .bool(true) }
        let events = try ServerSentEvents(port: console.port, token: console.token)
        defer { events.close() }
        try await eventually("the stream's first word") { events.text.contains("\"connected\":true") }
        let exam = try await console.call("exam.create", .object(["patient": ExamTests.patient, "referral": .string("Dr Who: screening")]))
        let id = try #require(exam["id"])
        let generation = try #require(try await console.state()["daemon"]?["generation"]?.numberValue)

        daemon.child.signal(SIGTERM)
        _ = await daemon.child.waitForExit()
        try await eventually("disconnected shown") { (try? await console.state())?["daemon"]?["connected"] == .bool(false) }
        try await eventually("disconnected streamed") { events.text.contains("\"connected\":false") }
        // No device figures while disconnected: nothing stale.
        #expect(try await console.state()["device"] == nil)

        daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 10)
        defer { daemon.child.stop() }
        try await eventually("reconnected", seconds: 15) {
            guard let s = try? await console.state() else { return false }
            return s["daemon"]?["connected"] == .bool(true) && (s["daemon"]?["generation"]?.numberValue ?? 0) > generation
        }
        let shown = try await console.call("exam.get", .object(["exam_id": id]))
        #expect(shown["state"]?.stringValue == "created", "\(shown)")
    }

    /// Today's scheduled patients through the console (DCMTK's worklist server as the RIS):
    /// this station's items in the order of their time, each with the exam it registers (or
    /// why it cannot: a sex the reference data lack); an exam created from one carries the
    /// worklist's patient and order unchanged. No worklist peer: said, not an error; a peer that
    /// does not answer: an error the page shows.
    @Test(.enabled(if: DicomTools.available)) func theWorklistsPatientsBecomeExams() async throws {
        let dir = TemporaryDirectory()
        let today = DicomExamTests.today()
        let odd = try #require(WorklistServer.exampleItems(date: today).first)
            .replacingOccurrences(of: "(0010,0040) CS [F]", with: "(0010,0040) CS [O]").replacingOccurrences(of: "ACC-1", with: "ACC-9")
            .replacingOccurrences(of: "1.2.826.0.1.3680043.10.9.1]", with: "1.2.826.0.1.3680043.10.9.9]")
        let worklist = try await WorklistServer(items: WorklistServer.exampleItems(date: today) + [odd])
        defer { worklist.stop() }
        let config = dir.file("dicom.conf")
        try "ae_title = DEXA1\nworklist = \(worklist.aeTitle)@127.0.0.1:\(worklist.port)\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 10)
        defer { daemon.child.stop() }
        let console = try await Console(in: dir, socket: daemon.socketPath, dicomConfig: config)
        defer { console.child.stop() }

        let (status, list) = try await Self.worklist(console)
        #expect(status == 200 && list["configured"] == .bool(true) && list["station"]?.stringValue == "DEXA1", "\(list)")
        guard case .array(let items)? = list["items"] else { Issue.record("no items: \(list)"); return }
        // ACC-4 is another station's.
        #expect(items.compactMap { $0["accession_number"]?.stringValue } == ["ACC-1", "ACC-9", "ACC-2", "ACC-3", "ACC-5"])
        #expect(items.contains { $0["display_name"]?.stringValue == "Søren Ødegård" }, "the Latin-1 item read: \(items)")
        let ninth = try #require(items.first { $0["accession_number"]?.stringValue == "ACC-9" })
        #expect(ninth["registration"] == nil && ninth["problem"]?.stringValue?.contains("female or male") == true, "\(ninth)")
        let second = try #require(items.first { $0["accession_number"]?.stringValue == "ACC-2" })
        let registration = try #require(second["registration"])
        #expect(registration["patient"]?["name"]?.stringValue == "Zoë Müller" && registration["patient"]?["birth_date"]?.stringValue == "1948-01-01",
                "\(registration)")

        // The page's "Create exam": exam.create with the registration as it came.
        let exam = try await console.call("exam.create", registration)
        #expect(exam["patient"]?["id"]?.stringValue == "P-0043" && exam["scheduled"]?["accession_number"]?.stringValue == "ACC-2"
                && exam["scheduled"]?["study_instance_uid"]?.stringValue == "1.2.826.0.1.3680043.10.9.2", "\(exam)")
        #expect(exam["referral"]?.stringValue?.contains("referred by Rita Referrer") == true, "\(exam)")
        // The same order again (a double press, the item chosen twice): refused, naming the exam
        // that holds it; once that exam is aborted, the order may be taken again.
        let (_, againBody) = try await console.request("POST", "/api/call", body: .object(["method": .string("exam.create"), "params": registration]))
        let again = try JSONDecoder().decode(JSONValue.self, from: againBody)
        #expect(again["error"]?["code"]?.intValue == -32007 && again["error"]?["message"]?.stringValue?.contains("already fulfils the order with accession number ACC-2") == true,
                "\(again)")
        _ = try await console.call("exam.abort", .object(["exam_id": try #require(exam["id"]), "reason": .string("registered twice")]))
        let retaken = try await console.call("exam.create", registration)
        #expect(retaken["scheduled"]?["accession_number"]?.stringValue == "ACC-2" && retaken["id"] != exam["id"])

        // The RIS gone: an error, said; the console still serves the day.
        worklist.stop()
        let (downStatus, down) = try await Self.worklist(console, refresh: true)
        #expect(downStatus == 503 && down["error"]?.stringValue?.contains("worklist WORKLIST@127.0.0.1") == true, "\(down)")
        #expect(try await console.request("GET", "/api/state").status == 200)
        #expect(try await console.request("GET", "/api/worklist?refesh=1").status == 400)

        // A RIS that takes the connection and never answers: the console answers at once all
        // the same ("asking"), so that the page's requests, and Stop, are never held behind it.
        let silent = try Self.silentListener()
        defer { Glibc.close(silent.fd) }
        let slowConfig = dir.file("slow.conf")
        try "ae_title = DEXA1\nworklist = SLOW@127.0.0.1:\(silent.port)\n".write(toFile: slowConfig, atomically: true, encoding: .utf8)
        let slow = try await Console(in: TemporaryDirectory(), socket: daemon.socketPath, dicomConfig: slowConfig)
        defer { slow.child.stop() }
        for _ in 0..<3 {
            let started = ContinuousClock.now
            let (asking, body) = try await slow.request("GET", "/api/worklist?refresh=1")
            let answer = try JSONDecoder().decode(JSONValue.self, from: body)
            #expect(asking == 200 && answer["refreshing"] == .bool(true), "\(answer)")
            #expect(ContinuousClock.now - started < .seconds(2), "the worklist's answer waited for the RIS")
        }
        #expect(try await slow.request("POST", "/api/stop", body: .object([:])).status == 200)

        // No worklist peer configured: said, not an error; no query made.
        let plain = try await Console(in: TemporaryDirectory(), socket: daemon.socketPath)
        defer { plain.child.stop() }
        let none = try await Self.worklist(plain).json
        #expect(none["configured"] == .bool(false) && none["note"]?.stringValue?.contains("no worklist peer") == true, "\(none)")
        // A misspelt parameter of a document is refused, not ignored.
        #expect(try await console.request("GET", "/api/report?exam=1&exm=2").status == 400)
    }

    /// The console's worklist once its query in the background has ended (`refresh`: a new one).
    static func worklist(_ console: Console, refresh: Bool = false) async throws -> (status: Int, json: JSONValue) {
        var answer: (status: Int, json: JSONValue) = (0, .null)
        var path = "/api/worklist" + (refresh ? "?refresh=1" : "")
        try await eventually("the worklist's answer", seconds: 30) {
            guard let (status, body) = try? await console.request("GET", path), let json = try? JSONDecoder().decode(JSONValue.self, from: body) else { return false }
            answer = (status, json)
            path = "/api/worklist"
            return json["refreshing"] == .bool(false)
        }
        return answer
    }

    /// A TCP port on 127.0.0.1 that takes connections (the kernel completes them) and never
    /// answers: a RIS that hangs.
    static func silentListener() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestTimeout("no socket") }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { Glibc.close(fd); throw TestTimeout("cannot listen") }
        return (fd, Int(UInt16(bigEndian: sa.sin_port)))
    }

    /// A technologist's day in a real browser (Tests/Browser/console.py: Debian's chromium
    /// through chromium-driver, driven by Selenium), with DCMTK's worklist server as the RIS:
    /// the page linked and the day's scheduled patients listed; an exam typed in by hand, its
    /// checklist blocked by a pregnancy and then complete, Start, X-rays shown on and the image
    /// growing; the spine's quick look and results without a click (regions, its image, the
    /// report as PDF); a site skipped with its reason; the left hip and the lateral spine, the
    /// exam complete with the vertebrae's heights and grades; a reader's grade through
    /// **Correct…**; a second exam from a worklist item, a site added back to its plan, Start,
    /// Esc while its spine exposes: X-rays off within 1 s of the press on the simulator's
    /// clock; dexad restarted under the page: "disconnected", then back with the exam's true
    /// state. Screenshots of each screen in `DEXA_CONSOLE_SHOTS` when set (docs/console-ui/ was
    /// made so), else in the test's directory.
    @Test func aTechnologistsDayInTheBrowser() async throws {
        guard let python = Self.browserPeers("/usr/bin/chromedriver") else { return }
        let dir = TemporaryDirectory()
        let speed = Self.speed
        let (worklist, config) = try await Self.worklistRig(dir)
        defer { worklist.stop() }
        let (sim, first) = try await Self.examRig(dir)
        var daemon = first
        defer { sim.child.stop(); daemon.child.stop() }
        let (_, esp) = try AnalyzeTests.writePhantoms(dir)
        let console = try await Console(in: dir, socket: daemon.socketPath, dicomConfig: config, qcPhantom: esp)
        defer { console.child.stop() }
        let run = try BrowserRun("console.py", python: python, console: console, dir: dir)
        let browser = run.child
        defer { browser.stop() }
        func said(_ name: String) -> Bool { run.said(name) }
        let off = try await run.letThePagePressStop(sim)
        print(String(format: "browser Stop (Esc): X-rays off %.0f ms after the test let the page press (simulator's clock)", off))
        #expect(off <= 1000)
        _ = try await sim.control("speed \(speed)")
        let sync = run.sync

        daemon.child.signal(SIGTERM)
        _ = await daemon.child.waitForExit()
        _ = FileManager.default.createFile(atPath: sync + "/restarting", contents: nil)
        try await Task.sleep(for: .seconds(2))
        daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: speed)
        try await eventually("the page reconnected", seconds: 90) { said("reconnected") || !browser.isRunning }
        #expect(said("reconnected"), "\(browser.log)")
        #expect(await browser.waitForExit(seconds: 30) == 0, "\(browser.log)")
        let report = run.report
        print("browser saw: \(report.map { "\($0)" } ?? browser.log)")
        #expect(report?["blocked_text"]?.stringValue?.hasPrefix("Blocked: pregnancy") == true, "\(String(describing: report))")
        #expect(report?["xray_while_disconnected"]?.stringValue == "X-RAYS: UNKNOWN")
        #expect(report?["image_has_content"] == .bool(true), "\(String(describing: report))")
        // The report made by the console from the results and the site's decomposed scan.
        let pdf = report?["report"]
        #expect(pdf?[0]?.intValue == 200 && pdf?[1]?.stringValue == "application/pdf" && (pdf?[2]?.intValue ?? 0) > 10_000
                && pdf?[3]?.stringValue == "%PDF-", "\(String(describing: pdf))")
        #expect((report?["site_image_width"]?.intValue ?? 0) > 100)
        // The skip and its reason on the record (dexad adds who skipped it).
        #expect(report?["skipped"]?[0]?[0]?.stringValue == "right_hip" && report?["skipped"]?[0]?[1]?.stringValue?.hasSuffix(": right hip replaced (metal)") == true,
                "\(String(describing: report))")
        #expect(report?["url_keeps_token"] == .bool(true))
        // Six tabs, one stream between them (a shared worker), every tab live; Stop (above) with them open.
        #expect(report?["streams_with_six_tabs"] == .number(1), "\(String(describing: report))")
        #expect(report?["other_tabs_live"] == .array(Array(repeating: .bool(true), count: 5)), "\(String(describing: report))")
        #expect(report?["streams_with_one_tab"] == .number(1), "\(String(describing: report))")
        // The day's worklist, the exam made from it, a site added, the quick look, the VFA, a reader's grade.
        #expect(report?["scheduled"]?.stringValue?.contains("Zoë Müller") == true, "\(String(describing: report))")
        #expect(report?["worklist_exam"] == .array([.string("Chidi Okafor"), .string("P-0044"), .string("ACC-3")]), "\(String(describing: report))")
        #expect(report?["plan_before_add"]?.stringValue?.contains("right hip") == false && report?["plan_after_add"]?.stringValue?.contains("right hip") == true,
                "\(String(describing: report))")
        #expect(report?["quick_look"]?[0]?.stringValue?.contains("g/cm²") == true, "\(String(describing: report))")
        #expect(report?["vfa_rows"]?[0]?.stringValue?.hasPrefix("T4") == true, "\(String(describing: report))")
        // Each analysed site's image drawn (the spine's, the hip's, the lateral spine's).
        if case .array(let images)? = report?["site_images"] {
            #expect(images.count == 3 && images.allSatisfy { ($0[1]?.intValue ?? 0) > 100 }, "\(images)")
        } else { Issue.record("no site images: \(String(describing: report))") }
        #expect(report?["corrected_row"]?[0]?.stringValue?.contains("wedge") == true
                && report?["corrected_row"]?[0]?.stringValue?.contains("the reader's grade") == true, "\(String(describing: report))")
        for name in ["01-the-day", "03-checklist-blocked", "05-scanning", "06-results", "06c-completed-results", "06d-correction", "07-stopped", "08-disconnected",
                     "09-reconnected"] {
            #expect(FileManager.default.fileExists(atPath: "\(run.shots)/\(name).png"), "no screenshot \(name)")
        }
    }

    /// The console in Firefox (Tests/Browser/console_firefox.py: Debian's firefox-esr, headless,
    /// through its Marionette protocol): the page linked, the worklist's patients, an exam from
    /// the form and its checklist, Start, X-rays shown on and the image growing, Esc while the
    /// spine exposes: X-rays off within 1 s of the press on the simulator's clock.
    @Test func theConsoleInFirefox() async throws {
        guard let python = Self.browserPeers("/usr/bin/firefox-esr") else { return }
        let dir = TemporaryDirectory()
        let (worklist, config) = try await Self.worklistRig(dir)
        defer { worklist.stop() }
        let (sim, daemon) = try await Self.examRig(dir)
        defer { sim.child.stop(); daemon.child.stop() }
        let console = try await Console(in: dir, socket: daemon.socketPath, dicomConfig: config)
        defer { console.child.stop() }
        let run = try BrowserRun("console_firefox.py", python: python, console: console, dir: dir)
        defer { run.child.stop() }
        let off = try await run.letThePagePressStop(sim)
        print(String(format: "Firefox Stop (Esc): X-rays off %.0f ms after the test let the page press (simulator's clock)", off))
        #expect(off <= 1000)
        #expect(await run.child.waitForExit(seconds: 30) == 0, "\(run.child.log)")
        let report = run.report
        print("Firefox saw: \(report.map { "\($0)" } ?? run.child.log)")
        #expect(report?["user_agent"]?.stringValue?.contains("Firefox/") == true, "\(String(describing: report))")
        #expect(report?["image_has_content"] == .bool(true) && report?["after_stop"]?.stringValue?.contains("aborted") == true, "\(String(describing: report))")
    }

    /// The browser tests' Python and `browser`, or nil (and under CI a failure: never a silent skip).
    static func browserPeers(_ browser: String) -> String? {
        let python = MPPSServer.python
        guard FileManager.default.isExecutableFile(atPath: python), FileManager.default.isExecutableFile(atPath: browser) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { Issue.record("\(browser) or the browser tests' environment is missing: run scripts/setup") }
            return nil
        }
        return python
    }

    /// DCMTK's worklist server with today's example items, and DICOM settings naming it.
    static func worklistRig(_ dir: TemporaryDirectory) async throws -> (WorklistServer, String) {
        let worklist = try await WorklistServer(items: WorklistServer.exampleItems(date: DicomExamTests.today()))
        let config = dir.file("dicom.conf")
        try "ae_title = DEXA1\nworklist = \(worklist.aeTitle)@127.0.0.1:\(worklist.port)\n".write(toFile: config, atomically: true, encoding: .utf8)
        return (worklist, config)
    }

    /// A browser script (Tests/Browser/SCRIPT) on the console's page, and the test's side of
    /// their meeting through files in `sync` (Tests/Browser/meeting.py). Screenshots go to
    /// `DEXA_CONSOLE_SHOTS` when set, else to the test's directory.
    struct BrowserRun {
        let child: ChildProcess
        let sync: String
        let shots: String

        init(_ script: String, python: String, console: Console, dir: TemporaryDirectory) throws {
            sync = dir.file("sync")
            try FileManager.default.createDirectory(atPath: sync, withIntermediateDirectories: true)
            shots = ProcessInfo.processInfo.environment["DEXA_CONSOLE_SHOTS"] ?? dir.file("shots")
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
            child = try ChildProcess(executable: python,
                                     arguments: [root + "/Tests/Browser/" + script, "--url", "\(console.base)/?token=\(console.token)", "--shots", shots, "--sync", sync],
                                     logPath: dir.file(script + ".log"))
        }

        func said(_ name: String) -> Bool { FileManager.default.fileExists(atPath: sync + "/" + name) }

        /// Waits for the page to show the scan exposing (`scanning`), sets the unit to real
        /// time (a hiccup of this machine is then not multiplied by the test speed), lets the
        /// page press Stop (`press`) and waits for it to show the stop (`stopped`): how long
        /// after the word X-rays went off, on the simulator's clock (ms).
        func letThePagePressStop(_ sim: SimulatorProcess) async throws -> Double {
            try await eventually("the page showing the scan exposing", seconds: 240) { said("scanning") || !child.isRunning }
            try #require(said("scanning"), "the browser gave up: \(child.log)")
            #expect(try await sim.control("speed 1").contains("ok"))
            let pressed = try #require(try await sim.status()["uptimeMs"]?.numberValue)
            _ = FileManager.default.createFile(atPath: sync + "/press", contents: nil)
            try await eventually("the page showing the stop", seconds: 60) { said("stopped") || !child.isRunning }
            try #require(said("stopped"), "the browser gave up: \(child.log)")
            let exposures: [JSONValue] = if case .array(let a)? = try await sim.status()["exposures"] { a } else { [] }
            let running = exposures.first { ($0["xrayOnMs"]?.numberValue ?? .infinity) <= pressed && ($0["xrayOffMs"]?.numberValue ?? 0) >= pressed }
            return try #require(running?["xrayOffMs"]?.numberValue, "no exposure ran when the test let the page press: \(exposures)") - pressed
        }

        /// The JSON line the script printed last: what it saw.
        var report: JSONValue? { child.log.split(separator: "\n").last.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) } }
    }

    // MARK: - Sockets

    /// A server-sent-event stream read on a thread of its own.
    final class ServerSentEvents: Sendable {
        private let received = Mutex("")
        private let fd: Int32

        init(port: Int, token: String) throws {
            let socketFD = try WebConsoleTests.tcpSocket("127.0.0.1", port: port)
            fd = socketFD
            let request = "GET /api/events?token=\(token) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAccept: text/event-stream\r\n\r\n"
            _ = request.withCString { Glibc.write(socketFD, $0, strlen($0)) }
            let t = Thread { [weak self] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = Glibc.read(socketFD, &buffer, buffer.count)
                    if n <= 0 { break }
                    guard let self else { break }
                    let chunk = String(decoding: buffer[0..<n], as: UTF8.self)
                    self.received.withLock { $0 += chunk }
                }
            }
            t.start()
        }

        var text: String { received.withLock { $0 } }
        func close() { shutdown(fd, Int32(SHUT_RDWR)); Glibc.close(fd) }
    }

    static func tcpSocket(_ address: String, port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestTimeout("no socket") }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, address, &sa.sin_addr)
        let ok = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { Glibc.close(fd); throw TestTimeout("cannot connect to \(address):\(port)") }
        return fd
    }

    static func tcpConnects(_ address: String, port: Int) -> Bool {
        guard let fd = try? tcpSocket(address, port: port) else { return false }
        Glibc.close(fd)
        return true
    }

    /// This machine's IPv4 addresses other than loopback.
    static func nonLoopbackAddresses() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: [String] = []
        var p = list
        while let a = p {
            if let sa = a.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) {
                var host = [CChar](repeating: 0, count: 64)
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { var addr = $0.pointee.sin_addr; _ = inet_ntop(AF_INET, &addr, &host, 64) }
                let s = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !s.hasPrefix("127.") { out.append(s) }
            }
            p = a.pointee.ifa_next
        }
        return out
    }
}
