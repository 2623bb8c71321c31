from hnmine.cli import main

main()
