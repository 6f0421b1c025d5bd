import CLibFuzzer
import DXFuzzing
import Foundation

/// `dexa-fuzz TARGET [libFuzzer flags] [CORPUS...]` in the fuzzing build (`scripts/fuzz`);
/// `dexa-fuzz TARGET FILE|DIR...` in the normal build runs each input once and prints what
/// the target made of it (a crash the fuzzer found, replayed under the debugger or by hand).
///
/// The fuzzing build passes the target on in `DEXA_FUZZ_TARGET`: libFuzzer's -fork, -jobs,
/// -merge and -minimize_crash start the program again with libFuzzer's own arguments only,
/// and the children find their target there.
@main
enum DexaFuzz {
    static func main() {
        var args = CommandLine.arguments
        if args.count >= 2, FuzzTarget(rawValue: args[1]) != nil {
            setenv(Selected.variable, args[1], 1)
            args.remove(at: 1)
        }
        guard let target = Selected.target else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
            FileHandle.standardError.write(Data("usage: dexa-fuzz TARGET [libFuzzer flags] [CORPUS...]\ntargets: \(names)\n".utf8))
            exit(2)
        }
        #if DEXA_LIBFUZZER
        // libFuzzer reads its own flags and corpus directories; the target's name is ours.
        var driverArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        var argc = CInt(driverArgs.count - 1)
        let status = driverArgs.withUnsafeMutableBufferPointer { buffer -> CInt in
            var argv = buffer.baseAddress
            return LLVMFuzzerRunDriver(&argc, &argv) { data, size in runSelected(data, size) }
        }
        exit(status)
        #else
        replay(target, paths: Array(args.dropFirst()))
        #endif
    }

    static func replay(_ target: FuzzTarget, paths: [String]) {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("dexa-fuzz: \(path) does not exist\n".utf8))
                exit(2)
            }
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            print("\(file): \(target.run(Array(data)))")
        }
    }
}

/// The target the fuzzing run drives: `DEXA_FUZZ_TARGET`, read once (after `main` has set it
/// from the command line).
enum Selected {
    static let variable = "DEXA_FUZZ_TARGET"
    static let target: FuzzTarget? = ProcessInfo.processInfo.environment[variable].flatMap(FuzzTarget.init(rawValue:))
}

/// libFuzzer's entry point. The fuzzing build's driver calls it through `LLVMFuzzerRunDriver`;
/// it is also the name libFuzzer's own main (linked by -sanitize=fuzzer) refers to.
@_cdecl("LLVMFuzzerTestOneInput")
public func runSelected(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    _ = Selected.target?.run(bytes)
    return 0
}
