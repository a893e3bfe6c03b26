from onnxaudit.cli import main

main()
